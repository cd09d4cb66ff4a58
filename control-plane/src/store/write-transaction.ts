// The commit protocol every rule change follows, in one transaction:
//
//   1. take a write_id (sequence, no lock);
//   2. write rules, change-log rows and audit rows tagged with that write_id
//      (row locks only: concurrent writers proceed in parallel);
//   3. LAST, bump the revision counter (a row lock held until commit), insert
//      the revisions row mapping write_id -> revision with its commit time,
//      and pg_notify('fleetwall_revision', revision): delivered at commit.
//
// Step 2's SQL is change-audit.ts; step 3's is revisionCtes() below, and
// the retry loop is retryWrite(): the transaction (writeTransaction) and the
// single-statement group commit (RuleStore.createGroup) both use them.
//
// Because the counter is the last lock taken and is held to commit,
// revisions are gap-free and become visible in order: a listener that sees
// revision R knows every revision below R is committed. Because it is taken
// last, a 1M-row import holds it for milliseconds, not for the whole COPY.
import type { Sql, TransactionSql } from 'postgres';
import { applyAuditNote, currentAuditNote } from './audit-note.js';
import { applyAuditForced } from './audit-forced.js';

export const REVISION_CHANNEL = 'fleetwall_revision';

export type RevisionKind =
  | 'create'
  | 'batch_create'
  | 'import'
  | 'update'
  | 'delete'
  | 'batch_delete'
  | 'expire'
  // A subscribed list (lists/): added, refreshed, removed.
  | 'list_create'
  | 'list_refresh'
  | 'list_delete'
  // Detection policies (respond/): created, deleted; a ban a detection created or extended.
  | 'policy_create'
  | 'policy_delete'
  | 'ban';

export interface WriteBody<T> {
  /** What the transaction produced (returned to the caller). */
  readonly value: T;
  /** Rule changes written; 0 commits nothing and takes no revision. */
  readonly changes: number;
}

export interface WriteResult<T> {
  readonly value: T;
  /** 0n when nothing changed. */
  readonly revision: bigint;
  readonly commitTime: Date | undefined;
}

const RETRYABLE = new Set(['23505', '40P01', '40001']);

/** Unique-violation races, deadlocks, serialization failures: worth running again. */
export function isRetryable(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code;
  return code !== undefined && RETRYABLE.has(code);
}

/**
 * The one retry loop of the write path: runs `write` (a whole transaction or
 * a single-statement write) again on unique-violation races, deadlocks and
 * serialization failures, at most `attempts` times in all.
 */
export async function retryWrite<T>(write: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (e) {
      if (attempt < attempts && isRetryable(e)) continue;
      throw e;
    }
  }
}

export interface RevisionCommit {
  /** SQL expressions for the revisions row. */
  readonly writeId: string;
  readonly actor: string;
  readonly kind: string;
  readonly changeCount: string;
  /** An SQL condition: no revision is taken when it is false (e.g. nothing was inserted). */
  readonly onlyIf?: string;
}

/**
 * Step 3 as SQL, the one place it is written: CTEs `c` (the counter bump,
 * whose row lock is held to commit) and `rv` (the revisions row, whose
 * RETURNING notifies, delivered at commit). The statement that ends with
 * them must read `rv` (its revision and commit_time).
 */
export function revisionCtes(p: RevisionCommit): string {
  return `c as (update revision_counter set value = value + 1 where id = 1${p.onlyIf ? ` and ${p.onlyIf}` : ''} returning value),
   rv as (insert into revisions (revision, write_id, commit_time, actor, kind, change_count)
          select c.value, ${p.writeId}, clock_timestamp(), ${p.actor}, ${p.kind}, ${p.changeCount} from c
          returning revision, commit_time, pg_notify('${REVISION_CHANNEL}', revision::text))`;
}

const COMMIT_REVISION = `with ${revisionCtes({ writeId: '$1::bigint', actor: '$2', kind: '$3', changeCount: '$4::int' })}
  select revision, commit_time from rv`;

/**
 * Runs `body` in a write transaction and commits it as one revision. Retries
 * the whole transaction (body included) on unique-violation races, deadlocks
 * and serialization failures; the body must therefore be repeatable.
 */
export function writeTransaction<T>(
  sql: Sql,
  actor: string,
  kind: RevisionKind,
  body: (tx: TransactionSql, writeId: bigint) => Promise<WriteBody<T>>,
  attempts = 3,
): Promise<WriteResult<T>> {
  const note = currentAuditNote();
  return retryWrite(
    () =>
      sql.begin(async (tx) => {
        await applyAuditNote(tx, note);
        await applyAuditForced(tx);
        const [w] = await tx<{ id: bigint }[]>`select nextval('write_id_seq') as id`;
        const writeId = w!.id;
        const out = await body(tx, writeId);
        if (out.changes === 0) return { value: out.value, revision: 0n, commitTime: undefined };
        const [r] = await tx.unsafe<{ revision: bigint; commit_time: Date }[]>(
          COMMIT_REVISION,
          [writeId.toString(), actor, kind, out.changes] as never[],
          { prepare: true },
        );
        return { value: out.value, revision: r!.revision, commitTime: r!.commit_time };
      }) as Promise<WriteResult<T>>,
    attempts,
  );
}
