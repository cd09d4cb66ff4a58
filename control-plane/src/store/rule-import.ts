// Committing an import as one revision, once its whole list is in hand
// (services/import-rules.ts reads the stream first, so no transaction or
// connection is held while a client sends slowly or not at all): read the
// stored CIDRs of the same direction and selector (duplicates), reserve ids,
// COPY the new rows, one bulk change-log row (op 3: "every rule with this
// write_id") instead of a row per rule, commit. Readers of the change log
// expand it through rules.write_id; this process's own feed takes the rows
// it already has (BulkHandoff) instead of reading a million rows back. A
// unique-violation race with a concurrent writer retries the transaction;
// an aborted import (the client went away, the deadline passed) rolls back.
import type { Sql } from 'postgres';
import type { Writable } from 'node:stream';
import type { RuleSpec } from '../rules/validate.js';
import { encodeAgentRule } from '../sync/wire-encoding.js';
import { changeAuditCtes, OP_BULK_UPSERT } from './change-audit.js';
import { copyText, type RuleStore } from './rule-store.js';
import { writeTransaction } from './write-transaction.js';

/** What every line of an import shares: a validated rule without its CIDR. */
export type ImportTemplate = Omit<RuleSpec, 'cidr' | 'prefix'>;

/** The rows of a bulk write as committed, for this process's revision feed. */
export interface BulkPayload {
  readonly ids: readonly bigint[];
  readonly cidrs: readonly string[];
  /** AgentRule bytes (latin1) per rule, when already encoded. */
  readonly encoded?: readonly string[];
  readonly template: ImportTemplate;
}

/** Where the importing process leaves a bulk write's rows for its feed (keyed by write_id). */
export interface BulkHandoff {
  put(writeId: bigint, p: BulkPayload): void;
  drop(writeId: bigint): void;
}

export interface ImportCommit {
  readonly added: number;
  /** Lines whose CIDR already had a rule with this direction and selector. */
  readonly existing: number;
  readonly revision: bigint;
  readonly timings: Record<string, number>;
}

const LINES_PER_WRITE = 4096;

/** Reserves n ids from the rules sequence (burned if the import does not commit). */
async function reserveIds(sql: Sql, n: number): Promise<bigint[]> {
  const [r] = await sql<{ lo: bigint; hi: bigint; list: string | null }[]>`
    with s as (select nextval('rules_id_seq') as x from generate_series(1, ${n}))
    select min(x) as lo, max(x) as hi,
           case when max(x) - min(x) + 1 = count(*) then null else string_agg(x::text, ',' order by x) end as list
    from s`;
  if (r!.list !== null) return r!.list.split(',').map((x) => BigInt(x));
  const out = new Array<bigint>(n);
  for (let i = 0; i < n; i++) out[i] = r!.lo + BigInt(i);
  return out;
}

function copySuffix(t: ImportTemplate, writeId: bigint, actor: string): string {
  const now = new Date().toISOString();
  return (
    `\t${t.action}\t${t.direction}\t${copyText(JSON.stringify(t.selector))}\t${copyText(t.selectorKey)}\t${t.mode}` +
    `\t${t.expireTime ? t.expireTime.toISOString() : '\\N'}\t${copyText(t.comment)}\t${now}\t${now}\t${writeId}\t${copyText(actor)}\n`
  );
}

const COPY_COLUMNS =
  'id, cidr, action, direction, selector, selector_key, mode, expire_time, comment, create_time, update_time, write_id, created_by';

/** The bulk change-log row (rule_id null: every rule of this write_id) and its audit row. */
const FINISH_BULK = `with bulk as (select null::bigint as id),
   ${changeAuditCtes({ rows: 'bulk', writeId: '$1::bigint', actor: '$2', op: OP_BULK_UPSERT, action: 'rule.import', after: '$3::text::jsonb' })}
   select 1`;

async function finishBulk(tx: Sql, writeId: bigint, actor: string, after: Record<string, unknown>): Promise<void> {
  await tx.unsafe(FINISH_BULK, [writeId.toString(), actor, JSON.stringify(after)] as never[], { prepare: true });
}

/**
 * COPY ... FROM STDIN on a transaction, with an outcome that can be awaited:
 * postgres.js (3.4) never calls the stream's final callback when the server
 * rejects the COPY (e.g. a unique violation) - the error only reaches the
 * COPY query's reject(), which is watched here.
 */
async function openCopy(tx: Sql, text: string) {
  const q = tx.unsafe(text) as unknown as { reject: (e: unknown) => void; writable(): Promise<Writable> };
  let failure: unknown;
  let onFail!: (e: unknown) => void;
  const failed = new Promise<never>((_, rej) => (onFail = rej));
  failed.catch(() => undefined);
  const fail = (e: unknown) => {
    failure ??= e;
    onFail(e);
  };
  const reject = q.reject;
  q.reject = (e: unknown) => {
    fail(e);
    reject(e);
  };
  const writable = await q.writable();
  writable.on('error', fail);
  return {
    writable,
    failed: () => failure,
    /** Ends the COPY; resolves once the server accepted every row, throws its error otherwise. */
    async finish(): Promise<void> {
      if (failure) throw failure;
      await Promise.race([new Promise<void>((resolve) => writable.end(() => resolve())), failed]);
      if (failure) throw failure;
    },
    /** Aborts the COPY (CopyFail); the transaction can then roll back. */
    abort(why: unknown): void {
      if (!writable.destroyed) writable.destroy(why instanceof Error ? why : new Error(String(why)));
    },
  };
}

function write(w: Writable, chunk: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ok = w.write(chunk, (err) => (err ? reject(err) : undefined));
    if (ok) resolve();
    else {
      const onDrain = () => {
        w.off('error', onError);
        resolve();
      };
      const onError = (e: Error) => {
        w.off('drain', onDrain);
        reject(e);
      };
      w.once('drain', onDrain);
      w.once('error', onError);
    }
  });
}

export interface CommitImportOptions {
  /** The audit row's "after" (counts known at the end). */
  readonly summary: (added: number) => Record<string, unknown>;
  readonly handoff?: BulkHandoff;
  /** Aborted: the COPY stops and the transaction rolls back (checked between COPY writes and before commit). */
  readonly signal?: AbortSignal;
  /** statement_timeout for this transaction's statements (the COPY of a large list takes a while), ms. */
  readonly statementTimeoutMs?: number;
  /** Called inside the transaction with the rules to add, before any is written (the capacity check); may throw. */
  readonly beforeWrite?: (toAdd: readonly string[]) => Promise<void>;
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('the import was aborted');
}

/** All CIDRs in hand (canonical, unique): one transaction, one revision, retried on races. */
export async function commitImport(
  sql: Sql,
  store: RuleStore,
  t: ImportTemplate,
  cidrs: readonly string[],
  actor: string,
  opts: CommitImportOptions,
): Promise<ImportCommit> {
  const { handoff, signal } = opts;
  const staged: bigint[] = [];
  const timings: Record<string, number> = {};
  let committedWrite = -1n;
  try {
    const res = await writeTransaction(sql, actor, 'import', async (tx, w) => {
      checkAborted(signal);
      if (opts.statementTimeoutMs) await tx.unsafe(`set local statement_timeout = ${Math.max(1, Math.round(opts.statementTimeoutMs))}`);
      let t0 = Date.now();
      const existing = await store.existingCidrs(tx, t.direction, t.selectorKey);
      const toAdd = existing.size === 0 ? cidrs : cidrs.filter((c) => !existing.has(c));
      timings.existing_ms = Date.now() - t0;
      if (toAdd.length === 0) return { value: { added: 0, existing: cidrs.length, writeId: w }, changes: 0 };
      await opts.beforeWrite?.(toAdd);
      t0 = Date.now();
      const ids = await reserveIds(tx as unknown as Sql, toAdd.length);
      const suffix = copySuffix(t, w, actor);
      const encoded: string[] = handoff ? new Array<string>(toAdd.length) : [];
      function* lines(): Generator<string> {
        let buf: string[] = [];
        for (let i = 0; i < toAdd.length; i++) {
          buf.push(`${ids[i]}\t${toAdd[i]}${suffix}`);
          if (handoff) {
            encoded[i] = encodeAgentRule({
              id: ids[i]!,
              cidr: toAdd[i]!,
              action: t.action,
              direction: t.direction,
              mode: t.mode,
              expire_time: t.expireTime,
            });
          }
          if (buf.length >= LINES_PER_WRITE) {
            yield buf.join('');
            buf = [];
          }
        }
        if (buf.length) yield buf.join('');
      }
      const copy = await openCopy(tx as unknown as Sql, `copy rules (${COPY_COLUMNS}) from stdin`);
      try {
        for (const chunk of lines()) {
          checkAborted(signal);
          await write(copy.writable, chunk).catch(() => undefined);
          if (copy.failed()) break;
        }
        checkAborted(signal);
      } catch (e) {
        copy.abort(e);
        throw e;
      }
      await copy.finish();
      timings.copy_ms = Date.now() - t0;
      await finishBulk(tx as unknown as Sql, w, actor, opts.summary(toAdd.length));
      checkAborted(signal);
      if (handoff) {
        handoff.put(w, { ids, cidrs: toAdd, encoded, template: t });
        staged.push(w);
      }
      return { value: { added: toAdd.length, existing: cidrs.length - toAdd.length, writeId: w }, changes: toAdd.length };
    });
    if (res.revision !== 0n) committedWrite = res.value.writeId;
    return { added: res.value.added, existing: res.value.existing, revision: res.revision, timings };
  } finally {
    // Attempts that did not commit leave nothing for the feed.
    for (const w of staged) if (w !== committedWrite) handoff!.drop(w);
  }
}
