// The lists table and the SQL around a list's rules: reads, the per-list
// refresh lock, the list's current CIDRs (a few string_agg values, into an
// EntrySet) and their fingerprint (list-memory.ts), and the
// state a refresh leaves behind. The rule writes themselves are
// list-write.ts (inside the write protocol's transaction).
import type { Sql, TransactionSql } from 'postgres';
import { RuleList } from '../../../proto/gen/fleetwall/v1/list_service.js';
import { RefreshResult } from '../../../proto/gen/fleetwall/v1/list_service.js';
import { EntrySet } from './entry-set.js';
import type { RulesFingerprint } from './list-memory.js';
import type { ListSpec } from './list-spec.js';

export interface ListRow {
  readonly id: bigint;
  readonly name: string;
  readonly url: string;
  readonly every_ms: bigint;
  readonly format: number;
  readonly column_name: string;
  readonly action: number;
  readonly direction: number;
  readonly selector: Record<string, string>;
  readonly selector_key: string;
  readonly mode: number;
  readonly allow_private: boolean;
  readonly comment: string;
  readonly create_time: Date;
  readonly created_by: string;
  readonly etag: string;
  readonly last_modified: string;
  readonly entries: bigint;
  readonly next_run: Date;
  readonly last_refresh: unknown;
  readonly last_success_time: Date | null;
}

/** pg_try_advisory_lock(LIST_LOCK_CLASS, list id): "fwls". The two-key space never meets the migration lock's bigint key. */
const LIST_LOCK_CLASS = 0x66776c73;

export const BUSY = Symbol('busy');

export function specOfRow(r: ListRow): ListSpec {
  return {
    name: r.name,
    url: r.url,
    everyMs: Number(r.every_ms),
    format: r.format,
    column: r.column_name,
    action: r.action,
    direction: r.direction,
    mode: r.mode,
    selector: { ...r.selector },
    selectorKey: r.selector_key,
    allowPrivate: r.allow_private,
    comment: r.comment,
  };
}

export function listOfRow(r: ListRow): RuleList {
  const s = specOfRow(r);
  const ms = Number(r.every_ms);
  return RuleList.fromPartial({
    name: s.name,
    url: s.url,
    every: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
    format: s.format,
    column: s.column,
    action: s.action,
    direction: s.direction,
    selector: s.selector,
    mode: s.mode,
    allowPrivate: s.allowPrivate,
    comment: s.comment,
    createTime: r.create_time,
    createdBy: r.created_by,
    entries: r.entries,
    nextRefreshTime: r.next_run,
    ...(r.last_refresh ? { lastRefresh: RefreshResult.fromJSON(r.last_refresh) } : {}),
    ...(r.last_success_time ? { lastSuccessTime: r.last_success_time } : {}),
    etag: r.etag,
    lastModified: r.last_modified,
  });
}

/** What a refresh leaves in the list's row. */
export interface ListState {
  readonly result: RefreshResult;
  readonly nextRun: Date;
  /** Set when the fetch gave new validators (200) or confirmed them (304). */
  readonly validators?: { readonly etag: string; readonly lastModified: string };
  /** Rules the list owns after the refresh; unchanged when absent. */
  readonly entries?: number;
  /** Not a failure or refusal. */
  readonly success: boolean;
}

export class ListStore {
  constructor(private readonly sql: Sql) {}

  async get(name: string): Promise<ListRow | undefined> {
    const [r] = await this.sql<ListRow[]>`select * from lists where name = ${name}`;
    return r;
  }

  async all(): Promise<ListRow[]> {
    return this.sql<ListRow[]>`select * from lists order by name`;
  }

  /** Names of the lists due a refresh, oldest first. */
  async due(limit: number): Promise<string[]> {
    const rows = await this.sql<{ name: string }[]>`
      select name from lists where next_run <= now() order by next_run limit ${limit}`;
    return rows.map((r) => r.name);
  }

  /** Entries per list, for /metrics. */
  async entries(): Promise<{ name: string; entries: bigint }[]> {
    return this.sql<{ name: string; entries: bigint }[]>`select name, entries from lists order by name`;
  }

  /**
   * Runs `fn` holding the list's refresh lock (a session advisory lock on a
   * reserved connection, released on return, or by Postgres if this process
   * dies), or returns BUSY at once if another refresh, here or in another
   * control-plane process, holds it.
   */
  async withLock<T>(id: bigint, fn: () => Promise<T>): Promise<T | typeof BUSY> {
    const conn = await this.sql.reserve();
    try {
      const [got] = await conn<{ ok: boolean }[]>`select pg_try_advisory_lock(${LIST_LOCK_CLASS}::int4, ${id.toString()}::int4) as ok`;
      if (!got!.ok) return BUSY;
      try {
        return await fn();
      } finally {
        await conn`select pg_advisory_unlock(${LIST_LOCK_CLASS}::int4, ${id.toString()}::int4)`.catch(() => undefined);
      }
    } finally {
      conn.release();
    }
  }

  /** The list's row, locked for this transaction (null: deleted). */
  async lockRow(tx: TransactionSql, id: bigint): Promise<ListRow | undefined> {
    const [r] = await tx<ListRow[]>`select * from lists where id = ${id.toString()}::bigint for update`;
    return r;
  }

  /**
   * The CIDRs the list's rules hold now. Read as a few large text values
   * (one per range of 2^18 rule ids), not a row per rule: a million rules
   * cost one round trip and one string split each. (Not COPY TO: postgres.js
   * can leave its socket paused after a COPY whose stream the reader drained,
   * and the next statement on the connection then waits forever.)
   */
  async currentEntries(tx: TransactionSql, id: bigint): Promise<EntrySet> {
    const set = new EntrySet();
    const parts = await tx<{ t: string }[]>`
      select string_agg(cidr::text, E'\n') as t from rules where list_id = ${id.toString()}::bigint group by id >> 18`;
    for (const { t } of parts) {
      let start = 0;
      for (;;) {
        const nl = t.indexOf('\n', start);
        set.addStored(t, start, nl < 0 ? t.length : nl);
        if (nl < 0) break;
        start = nl + 1;
      }
    }
    return set.seal();
  }

  /** The list's rules' fingerprint now (list-memory.ts): their count and highest write_id. */
  async fingerprint(tx: TransactionSql, id: bigint): Promise<RulesFingerprint> {
    const [r] = await tx<{ n: number; w: string }[]>`
      select count(*)::int as n, coalesce(max(write_id), 0)::text as w from rules where list_id = ${id.toString()}::bigint`;
    return { count: r!.n, maxWriteId: BigInt(r!.w) };
  }

  /** Inserts a new list's row (in the transaction that writes its first rules); undefined if the name is taken. */
  async insert(tx: TransactionSql, s: ListSpec, actor: string, nextRun: Date): Promise<ListRow | undefined> {
    const [r] = await tx<ListRow[]>`
      insert into lists (name, url, every_ms, format, column_name, action, direction, selector, selector_key, mode,
                         allow_private, comment, created_by, next_run)
      values (${s.name}, ${s.url}, ${s.everyMs}, ${s.format}, ${s.column}, ${s.action}, ${s.direction},
              ${JSON.stringify(s.selector)}::text::jsonb, ${s.selectorKey}, ${s.mode}, ${s.allowPrivate}, ${s.comment},
              ${actor}, ${nextRun})
      on conflict (name) do nothing
      returning *`;
    return r;
  }

  /** Adds the revision a refresh committed as to its recorded result (known only after the commit). */
  async setRevision(id: bigint, revision: bigint): Promise<void> {
    await this.sql`update lists set last_refresh = jsonb_set(last_refresh, '{revision}', to_jsonb(${revision.toString()}::text))
                   where id = ${id.toString()}::bigint and last_refresh is not null`;
  }

  /** Records a refresh's outcome (in `tx`, or on its own). */
  async record(id: bigint, st: ListState, tx?: TransactionSql): Promise<void> {
    const q = tx ?? this.sql;
    const v = st.validators;
    await q`
      update lists set
        last_refresh = ${JSON.stringify(RefreshResult.toJSON(st.result))}::text::jsonb,
        next_run = ${st.nextRun},
        etag = ${v ? v.etag : this.sql`etag`},
        last_modified = ${v ? v.lastModified : this.sql`last_modified`},
        entries = ${st.entries !== undefined ? st.entries : this.sql`entries`},
        last_success_time = ${st.success ? this.sql`now()` : this.sql`last_success_time`}
      where id = ${id.toString()}::bigint`;
  }
}
