// The lockout guard's override of the write in progress: what an admin's
// `force` let through ("rule: 192.0.2.0/24 covers 192.0.2.1/32 (...)"), kept
// in audit_log.forced of every audit row the write makes. Like the note
// (audit-note.ts), it travels in a transaction-local setting the column
// defaults to (migration 5), so no write statement changes. The value is a
// box: an update decides it inside its transaction (after reading the row),
// before its audit row is written.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Sql, TransactionSql } from 'postgres';

export interface ForcedBox {
  text: string;
}

const boxes = new AsyncLocalStorage<ForcedBox>();

/** Longest text kept. */
export const MAX_FORCED = 2000;

/** Runs `fn` with `box` as the write's override (its text may be set later, before the audit row). */
export function withAuditForced<T>(box: ForcedBox, fn: () => T): T {
  return boxes.run(box, fn);
}

export function currentAuditForced(): string {
  return boxes.getStore()?.text.slice(0, MAX_FORCED) ?? '';
}

/**
 * Sets the override for the rest of this transaction: skipped outside
 * withAuditForced(); set even when empty inside it (a retried transaction
 * decides again).
 */
export async function applyAuditForced(tx: TransactionSql | Sql): Promise<void> {
  if (boxes.getStore() === undefined) return;
  await tx`select set_config('fleetwall.audit_forced', ${currentAuditForced()}, true)`;
}
