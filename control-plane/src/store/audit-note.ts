// The free-text note of the write in progress (the x-fleetwall-actor header:
// "cli:alice", a ticket number), never an identity: the actor of the audit
// log is the authenticated principal, passed explicitly. The transport
// adapters run each call inside withAuditNote(); writeTransaction() and
// the group commit put it into the transaction-local setting the
// audit_log.note column defaults to (migration 3), so no write statement
// changes. A note is at most MAX_NOTE characters, control characters removed.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Sql, TransactionSql } from 'postgres';

const notes = new AsyncLocalStorage<string>();

export const MAX_NOTE = 200;

export function normalizeNote(raw: string | undefined): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this strips
  const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
  return (raw ?? '').replace(CONTROL, '').trim().slice(0, MAX_NOTE);
}

export function withAuditNote<T>(note: string, fn: () => T): T {
  return note === '' && notes.getStore() === undefined ? fn() : notes.run(note, fn);
}

export function currentAuditNote(): string {
  return notes.getStore() ?? '';
}

/** Sets the note for the rest of this transaction (one statement; skipped when there is none). */
export async function applyAuditNote(tx: TransactionSql | Sql, note: string): Promise<void> {
  if (note !== '') await tx`select set_config('fleetwall.audit_note', ${note}, true)`;
}
