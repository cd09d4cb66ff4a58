// Reading the change log: revisions in order with the rules they touched (the
// rule's state now, or null once deleted), the rules changed in a window for
// resuming agents, and retention pruning.
import type { Sql } from 'postgres';
import { OP_BULK_UPSERT } from './change-audit.js';
import type { EncodableRule } from '../sync/wire-encoding.js';

export interface RevisionRecord {
  readonly revision: bigint;
  readonly writeId: bigint;
  readonly commitTime: Date;
  readonly kind: string;
  readonly changeCount: bigint;
}

/** What the sync fan-out needs of a rule: what is encoded for agents, and the selector to filter by. */
export interface SyncRuleRow extends EncodableRule {
  readonly selector_key: string;
}

export interface RevisionChanges extends RevisionRecord {
  /** Explicit changes (empty when pruned); a bulk import adds bulkChanges(). */
  readonly changes: RuleChange[];
  bulk: boolean;
}

export interface RuleChange {
  readonly ruleId: bigint;
  /** The rule as it is now; null when it no longer exists. */
  readonly row: SyncRuleRow | null;
  /** Its AgentRule bytes (latin1), when the writer already encoded them. */
  readonly encoded?: string;
}

const SYNC_COLUMNS = 'r.id, r.cidr::text as cidr, r.action, r.direction, r.mode, r.expire_time, r.selector_key';

export class ChangeLog {
  constructor(private readonly sql: Sql) {}

  /**
   * The revisions after `after`, in order, with their changes in one query.
   * A bulk import's changes are not expanded (bulk = true): read them with
   * bulkChanges().
   */
  async nextRevisions(after: bigint, limit: number): Promise<RevisionChanges[]> {
    type Row = Partial<SyncRuleRow> & {
      revision: bigint;
      write_id: bigint;
      commit_time: Date;
      kind: string;
      change_count: bigint;
      rule_id: bigint | null;
      op: number | null;
      id: bigint | null;
    };
    const rows = await this.sql.unsafe<Row[]>(
      `select v.revision, v.write_id, v.commit_time, v.kind, v.change_count, c.rule_id, c.op, ${SYNC_COLUMNS}
       from (select * from revisions where revision > $1::bigint order by revision limit $2) v
       left join changes c on c.write_id = v.write_id
       left join rules r on r.id = c.rule_id
       order by v.revision`,
      [after.toString(), limit] as never[],
    );
    const out: RevisionChanges[] = [];
    let cur: RevisionChanges | undefined;
    for (const r of rows) {
      if (!cur || cur.revision !== r.revision) {
        cur = {
          revision: r.revision,
          writeId: r.write_id,
          commitTime: r.commit_time,
          kind: r.kind,
          changeCount: r.change_count,
          changes: [],
          bulk: false,
        };
        out.push(cur);
      }
      if (r.op === null) continue;
      if (r.op === OP_BULK_UPSERT) cur.bulk = true;
      else cur.changes.push({ ruleId: r.rule_id!, row: r.id === null ? null : (r as unknown as SyncRuleRow) });
    }
    return out;
  }

  /** Every rule a bulk import wrote (still carrying its write_id), in its current state. */
  async bulkChanges(writeId: bigint): Promise<RuleChange[]> {
    const list: RuleChange[] = [];
    await this.sql
      .unsafe(`select ${SYNC_COLUMNS} from rules r where r.write_id = $1::bigint`, [writeId.toString()] as never[])
      .cursor(20000, (chunk) => {
        for (const r of chunk as unknown as SyncRuleRow[]) list.push({ ruleId: r.id, row: r });
      });
    return list;
  }

  /** Highest revision whose change-log rows are gone. */
  async logFloor(): Promise<bigint> {
    const [r] = await this.sql<{ value: string }[]>`select value from meta where key = 'log_floor'`;
    return BigInt(r!.value);
  }

  /** Revisions and changed rules in (after, upTo]. */
  async windowSize(after: bigint, upTo: bigint): Promise<{ revisions: bigint; changes: bigint }> {
    const [r] = await this.sql<{ n: bigint; c: string }[]>`
      select count(*)::bigint as n, coalesce(sum(change_count), 0)::text as c from revisions
      where revision > ${after.toString()}::bigint and revision <= ${upTo.toString()}::bigint`;
    return { revisions: r!.n, changes: BigInt(r!.c) };
  }

  /** For each rule changed in (after, upTo]: the last revision that changed it. */
  async changedRules(after: bigint, upTo: bigint): Promise<Map<bigint, bigint>> {
    const last = new Map<bigint, bigint>();
    const rows = await this.sql<{ revision: bigint; rule_id: bigint | null; op: number; write_id: bigint }[]>`
      select v.revision, c.rule_id, c.op, c.write_id from changes c join revisions v on v.write_id = c.write_id
      where v.revision > ${after.toString()}::bigint and v.revision <= ${upTo.toString()}::bigint
      order by v.revision`;
    for (const r of rows) {
      if (r.op === OP_BULK_UPSERT) {
        await this.sql<{ id: bigint }[]>`select id from rules where write_id = ${r.write_id.toString()}::bigint`.cursor(20000, (chunk) => {
          for (const x of chunk) last.set(x.id, r.revision);
        });
      } else {
        last.set(r.rule_id!, r.revision);
      }
    }
    return last;
  }

  /**
   * Drops change-log rows of revisions committed longer than `retentionMs`
   * ago and raises the log floor. Returns the new floor.
   */
  async prune(retentionMs: number): Promise<bigint> {
    return this.sql.begin(async (tx) => {
      const [cur] = await tx<{ value: string }[]>`select value from meta where key = 'log_floor' for update`;
      const [f] = await tx<{ r: bigint }[]>`
        select coalesce(max(revision), 0)::bigint as r from revisions
        where commit_time < now() - make_interval(secs => ${retentionMs / 1000})`;
      const floor = BigInt(cur!.value);
      if (f!.r <= floor) return floor;
      await tx`delete from changes c using revisions v
               where c.write_id = v.write_id and v.revision > ${floor.toString()}::bigint and v.revision <= ${f!.r.toString()}::bigint`;
      await tx`update meta set value = ${f!.r.toString()} where key = 'log_floor'`;
      return f!.r;
    });
  }
}
