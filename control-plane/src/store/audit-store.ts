// Reading the audit log (written by every rule write in change-audit.ts and
// by token-store.ts): newest first, keyset-paged by id.
import type { Sql } from 'postgres';

export interface AuditRow {
  readonly id: bigint;
  readonly time: Date;
  readonly actor: string;
  readonly note: string;
  readonly action: string;
  readonly rule_id: bigint | null;
  readonly revision: bigint | null;
  readonly before: unknown;
  readonly after: unknown;
  /** What a forced override of the lockout guard overrode ('' otherwise). */
  readonly forced: string;
}

export interface AuditFilter {
  readonly actor: string | undefined;
  readonly ruleId: bigint | undefined;
  /** An action, or a prefix ending in "." ("token."). */
  readonly action: string | undefined;
}

export class AuditStore {
  constructor(private readonly sql: Sql) {}

  /** Up to `limit` events with id < `beforeId` (0: from the newest), newest first. */
  async list(f: AuditFilter, beforeId: bigint, limit: number): Promise<AuditRow[]> {
    const actionPrefix = f.action?.endsWith('.') ? `${f.action.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null;
    return this.sql<AuditRow[]>`
      select a.id, a.time, a.actor, a.note, a.action, a.rule_id, v.revision, a.before, a.after, a.forced
      from audit_log a left join revisions v on v.write_id = a.write_id
      where (${beforeId.toString()}::bigint = 0 or a.id < ${beforeId.toString()}::bigint)
        and (${f.actor ?? null}::text is null or a.actor = ${f.actor ?? null})
        and (${f.ruleId?.toString() ?? null}::bigint is null or a.rule_id = ${f.ruleId?.toString() ?? null}::bigint)
        and (${f.action !== undefined && actionPrefix === null ? f.action : null}::text is null or a.action = ${f.action ?? null})
        and (${actionPrefix}::text is null or a.action like ${actionPrefix})
      order by a.id desc
      limit ${limit}`;
  }
}
