// The commit protocol every rule change follows, in one transaction:
//
//   1. take a write_id (sequence, no lock);
//   2. write rules, change-log rows and audit rows tagged with that write_id
//      (row locks only: concurrent writers proceed in parallel);
//   3. LAST, bump the revision counter (a row lock held until commit), insert
//      the revisions row mapping write_id -> revision with its commit time,
//      and pg_notify('fleetwall_revision', revision): delivered at commit.
//
// Because the counter is the last lock taken and is held to commit,
// revisions are gap-free and become visible in order: a listener that sees
// revision R knows every revision below R is committed. Because it is taken
// last, a 1M-row import holds it for milliseconds, not for the whole COPY.
import type { Sql, TransactionSql } from 'postgres';

export const REVISION_CHANNEL = 'fleetwall_revision';

export type RevisionKind = 'create' | 'batch_create' | 'import' | 'update' | 'delete' | 'batch_delete' | 'expire';

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
 * Runs `body` in a write transaction and commits it as one revision. Retries
 * the whole transaction (body included) on unique-violation races, deadlocks
 * and serialization failures; the body must therefore be repeatable.
 */
export async function writeTransaction<T>(
  sql: Sql,
  actor: string,
  kind: RevisionKind,
  body: (tx: TransactionSql, writeId: bigint) => Promise<WriteBody<T>>,
  attempts = 3,
): Promise<WriteResult<T>> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await sql.begin(async (tx) => {
        const [w] = await tx<{ id: bigint }[]>`select nextval('write_id_seq') as id`;
        const writeId = w!.id;
        const out = await body(tx, writeId);
        if (out.changes === 0) return { value: out.value, revision: 0n, commitTime: undefined };
        const [r] = await tx<{ revision: bigint; commit_time: Date }[]>`
          with c as (update revision_counter set value = value + 1 where id = 1 returning value)
          insert into revisions (revision, write_id, commit_time, actor, kind, change_count)
          select c.value, ${writeId.toString()}::bigint, clock_timestamp(), ${actor}, ${kind}, ${out.changes} from c
          returning revision, commit_time, pg_notify(${REVISION_CHANNEL}, revision::text)`;
        return { value: out.value, revision: r!.revision, commitTime: r!.commit_time };
      });
    } catch (e) {
      if (attempt < attempts && isRetryable(e)) continue;
      throw e;
    }
  }
}
