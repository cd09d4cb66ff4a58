// Step 2 of the write protocol (write-transaction.ts) as SQL, in one place:
// for every row a write touched, a change-log row (what the agents follow)
// and an audit row (who, what, before and after), both tagged with the
// write_id. Every rule write - create, group commit, update, delete, expiry,
// import - puts these two CTEs into its own statement, so it stays one round
// trip.

/** changes.op: a rule was created or changed, deleted, or (rule_id null) every rule of this write_id was created. */
export const OP_UPSERT = 1;
export const OP_DELETE = 2;
export const OP_BULK_UPSERT = 3;

export type ChangeOp = typeof OP_UPSERT | typeof OP_DELETE | typeof OP_BULK_UPSERT;

export type AuditAction = 'rule.create' | 'rule.update' | 'rule.delete' | 'rule.expire' | 'rule.import';

export interface ChangeAuditRows {
  /** The CTE holding the written rows (its `id` column is the rule id; null for a bulk row). */
  readonly rows: string;
  /** SQL expressions, evaluated per row of `rows`. */
  readonly writeId: string;
  readonly actor: string;
  readonly op: ChangeOp;
  readonly action: AuditAction;
  /** The audit row's before / after images (SQL expressions); null when absent. */
  readonly before?: string;
  readonly after?: string;
}

/** A stored rule row as the audit log keeps it (without its write_id). */
export function rowImage(alias: string): string {
  return `to_jsonb(${alias}.*) - 'write_id'`;
}

/** Two CTEs, `ch` and `au`, for a WITH list. */
export function changeAuditCtes(p: ChangeAuditRows): string {
  return `ch as (insert into changes (write_id, rule_id, op) select ${p.writeId}, ${p.rows}.id, ${p.op} from ${p.rows}),
   au as (insert into audit_log (actor, action, rule_id, write_id, before, after)
          select ${p.actor}, '${p.action}', ${p.rows}.id, ${p.writeId}, ${p.before ?? 'null'}, ${p.after ?? 'null'} from ${p.rows})`;
}
