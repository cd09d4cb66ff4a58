// Detections become fleet-wide bans (issue 18). A detection an agent reports
// is checked first - a source an allow rule covers, one the lockout guard
// protects, or one inside a node's failsafe entries is never banned (counted
// as exempted) - then queued per policy and written at most
// max_bans_per_second per policy (the rest wait in the queue: deferred,
// counted, not lost; one entry per source, a later detection refreshing
// it). One worker writes them, one transaction each, so a flood of bans
// holds one connection and operators' own writes keep theirs.
//
// The write (as `policy:NAME`, audited like any rule write, one revision):
// a ban in force for the source is extended (its rule's expire_time moved
// later, never earlier: one rule, no duplicate); otherwise the offence count
// goes up by one and a deny rule is created for duration x factor^(n-1)
// (escalation.ts) with the policy, node and evidence in its comment.
// At most WRITERS bans are written at once (different sources: no row is
// shared), so bans keep up with the cap without taking the pool from
// operators' own requests.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import { formatPrefix, type Prefix } from '../../../common/src/cidr.js';
import { NODE_LABEL } from '../../../common/src/labels.js';
import type { Detection } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { BanScope } from '../../../proto/gen/fleetwall/v1/policy.js';
import { Direction, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { LockoutGuard } from '../lockout/lockout-guard.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { CapacityGuard } from '../services/capacity-guard.js';
import { tableIndex } from '../sync/rule-cache.js';
import { selectorKey } from '../rules/selector.js';
import { changeAuditCtes, OP_UPSERT, rowImage } from '../store/change-audit.js';
import { writeTransaction } from '../store/write-transaction.js';
import { banDurationMs } from './escalation.js';
import type { PolicyRow } from './policy-store.js';

/** Sources waiting per policy at most (the oldest give way, counted as dropped). */
const MAX_QUEUED = 100_000;
const TICK_MS = 20;
/** Ban transactions in flight at once. */
const WRITERS = 2;

export type BanOutcome = 'created' | 'extended' | 'exempted' | 'covered' | 'refused' | 'gone';

export interface BanEvent {
  readonly policy: string;
  readonly source: string;
  readonly node: string;
  readonly outcome: BanOutcome;
  readonly why?: string;
  readonly ruleId?: bigint;
  readonly expireTime?: Date;
  readonly offences?: number;
}

interface Pending {
  readonly node: string;
  readonly d: Detection;
  readonly prefix: Prefix;
}

interface PolicyQueue {
  readonly items: Map<string, Pending>;
  tokens: number;
  at: number;
}

export interface BanCounts {
  detections: number;
  bans: number;
  exempted: number;
}

interface Written {
  readonly outcome: 'created' | 'extended' | 'covered' | 'refused';
  readonly why?: string;
  readonly ruleId: bigint | undefined;
  readonly until: Date | undefined;
  readonly offences: number;
}

export class BanWriter {
  private readonly queues = new Map<bigint, PolicyQueue>();
  private timer: NodeJS.Timeout | undefined;
  private working = false;
  /** Per policy id: what the store's counts have not got yet (flushed by the caller). */
  readonly unflushed = new Map<bigint, BanCounts>();
  readonly stats = { deferred: 0, dropped: 0, written: 0, failed: 0 };
  onEvent: ((e: BanEvent) => void) | undefined;

  /**
   * sql: the write pool (the ban transactions); readSql: the read pool (the
   * exemption checks: a read never waits for a connection a write holds);
   * capacity: a new ban rule that would overfill a node's kernel table is
   * refused like an operator's (CAPACITY_EXCEEDED; logged, not written).
   */
  constructor(
    private readonly sql: Sql,
    private readonly policyById: (id: bigint) => PolicyRow | undefined,
    private readonly guard: LockoutGuard | undefined,
    private readonly log: Logger,
    private readonly readSql: Sql = sql,
    private readonly capacity?: CapacityGuard,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.work(), TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private count(id: bigint, k: keyof BanCounts): void {
    let c = this.unflushed.get(id);
    if (!c) this.unflushed.set(id, (c = { detections: 0, bans: 0, exempted: 0 }));
    c[k]++;
  }

  /** Sources waiting now, over every policy. */
  get queued(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.items.size;
    return n;
  }

  /** A detection from `node`'s Sync stream. */
  detection(node: string, d: Detection): void {
    const p = this.policyById(d.policyId);
    if (!p) return;
    this.count(p.id, 'detections');
    if (d.monitor || p.spec.mode === Mode.MODE_MONITOR) return;
    const family = d.address.length === 4 ? 4 : d.address.length === 16 ? 6 : 0;
    if (family === 0 || d.prefixLength > d.address.length * 8) return;
    const prefix: Prefix = { family, bytes: new Uint8Array(d.address), len: Math.min(d.prefixLength, family === 4 ? 32 : 128) };
    let q = this.queues.get(p.id);
    if (!q) this.queues.set(p.id, (q = { items: new Map(), tokens: p.spec.maxBansPerSecond, at: Date.now() }));
    const key = formatPrefix(prefix);
    q.items.delete(key);
    q.items.set(key, { node, d, prefix });
    if (q.items.size > MAX_QUEUED) {
      const oldest = q.items.keys().next().value as string;
      q.items.delete(oldest);
      this.stats.dropped++;
    }
    queueMicrotask(() => void this.work());
  }

  /** Takes the next source a policy's rate allows now, round robin over the policies. */
  private take(): { p: PolicyRow; key: string; item: Pending } | undefined {
    for (const [id, q] of this.queues) {
      const p = this.policyById(id);
      if (!p) {
        this.queues.delete(id);
        continue;
      }
      const now = Date.now();
      const rate = p.spec.maxBansPerSecond;
      q.tokens = Math.min(rate, q.tokens + ((now - q.at) / 1000) * rate);
      q.at = now;
      if (q.tokens < 1 || q.items.size === 0) continue;
      const [key, item] = q.items.entries().next().value as [string, Pending];
      q.items.delete(key);
      q.tokens -= 1;
      // The next policy goes first next time.
      this.queues.delete(id);
      this.queues.set(id, q);
      return { p, key, item };
    }
    return undefined;
  }

  /** Writes what the policies' rates allow now, WRITERS bans at a time. */
  async work(): Promise<void> {
    if (this.working) return;
    this.working = true;
    try {
      const one = async (): Promise<void> => {
        for (let t = this.take(); t; t = this.take()) {
          const { p, key, item } = t;
          try {
            const e = await this.ban(p, item);
            this.stats.written++;
            if (e.outcome === 'created' || e.outcome === 'extended') this.count(p.id, 'bans');
            if (e.outcome === 'exempted') this.count(p.id, 'exempted');
            this.onEvent?.(e);
          } catch (err) {
            this.stats.failed++;
            this.log.warn({ err, policy: p.name, source: key }, 'ban write failed');
          }
        }
      };
      await Promise.all(Array.from({ length: WRITERS }, one));
      this.stats.deferred = this.queued;
    } finally {
      this.working = false;
    }
  }

  /** Why `prefix` must not be banned, or undefined. */
  private async exemption(p: PolicyRow, prefix: Prefix, cidr: string): Promise<string | undefined> {
    const dir = p.spec.direction === Direction.DIRECTION_EGRESS ? 'egress' : 'ingress';
    const hit = this.guard ? (await this.guard.checker()).lockoutCheck(prefix, dir) : undefined;
    if (hit) return `protected by the lockout guard (${hit.entry.cidr})`;
    const [allow] = await this.readSql<{ id: bigint; cidr: string }[]>`
      select id, cidr::text as cidr from rules where action = 2 and direction = ${p.spec.direction} and cidr >>= ${cidr}::cidr limit 1`;
    if (allow) return `covered by allow rule ${allow.id} (${allow.cidr})`;
    const [fs] = await this.readSql<{ name: string; cidr: string }[]>`
      select n.name, e->>'cidr' as cidr from nodes n, jsonb_array_elements(n.failsafe) e
      where (e->>'cidr')::cidr >>= ${cidr}::cidr limit 1`;
    if (fs) return `inside node ${fs.name}'s failsafe entry ${fs.cidr}`;
    return undefined;
  }

  private async ban(p: PolicyRow, item: Pending): Promise<BanEvent> {
    const cidr = formatPrefix(item.prefix);
    const base = { policy: p.name, source: cidr, node: item.node };
    const why = await this.exemption(p, item.prefix, cidr);
    if (why) {
      this.log.info({ ...base, why }, 'detection exempted: not banned');
      return { ...base, outcome: 'exempted', why };
    }
    const s = p.spec;
    const selector =
      s.scope === BanScope.BAN_SCOPE_NODE ? { [NODE_LABEL]: item.node } : s.scope === BanScope.BAN_SCOPE_SELECTOR ? s.scopeSelector : {};
    const selKey = selectorKey(selector);
    const actor = `policy:${p.name}`;
    const d = item.d;
    const evidence = `${Math.round(d.packetsPerSecond)} pkt/s, ${Math.round(d.bytesPerSecond)} B/s over ${s.windowMs}ms`;
    const res = await writeTransaction<Written>(this.sql, actor, 'ban', async (tx, w) => {
      const wid = w.toString();
      // The transaction's clock (the rule's create_time and update_time): a ban lasts its duration from then.
      const now = (await tx<{ now: Date }[]>`select now() as now`)[0]!.now;
      const [row] = await tx<{ offences: number; rule_id: bigint | null }[]>`
        select offences, rule_id from bans where policy_id = ${p.id.toString()}::bigint and source = ${cidr}::cidr and direction = ${s.direction}
        for update`;
      const [rule] = row?.rule_id
        ? await tx<
            { id: bigint; expire_time: Date | null }[]
          >`select id, expire_time from rules where id = ${row.rule_id.toString()}::bigint for update`
        : [];
      if (rule) {
        // A ban in force: extend it (the same offence), never shorten it.
        const offences = Number(row!.offences);
        const until = new Date(now.getTime() + banDurationMs(s, offences));
        if (rule.expire_time && rule.expire_time >= until)
          return { value: { outcome: 'extended' as Written['outcome'], ruleId: rule.id, until: rule.expire_time, offences }, changes: 0 };
        await tx.unsafe(
          `with old as (select ${rowImage('r')} as j from rules r where r.id = $1),
           u as (update rules set expire_time = $2::timestamptz, update_time = now(), write_id = $3::bigint where id = $1 returning *),
           ${changeAuditCtes({ rows: 'u', writeId: '$3::bigint', actor: '$4', op: OP_UPSERT, action: 'rule.update', before: '(select j from old)', after: rowImage('u') })}
           select 1`,
          [rule.id.toString(), until.toISOString(), wid, actor] as never[],
        );
        await tx`update bans set node = ${item.node}, expire_time = ${until}, pps = ${d.packetsPerSecond}, bps = ${d.bytesPerSecond}, last_time = now()
          where policy_id = ${p.id.toString()}::bigint and source = ${cidr}::cidr and direction = ${s.direction}`;
        return { value: { outcome: 'extended' as Written['outcome'], ruleId: rule.id, until, offences }, changes: 1 };
      }
      const offences = Number(row?.offences ?? 0) + 1;
      try {
        await this.capacity?.check([{ selector, table: tableIndex(s.direction, cidr), count: 1 }], 'ban');
      } catch (err) {
        if (!(err instanceof FleetwallError) || err.reason !== 'CAPACITY_EXCEEDED') throw err;
        return {
          value: {
            outcome: 'refused' as Written['outcome'],
            why: err.message,
            ruleId: undefined,
            until: undefined,
            offences: offences - 1,
          },
          changes: 0,
        };
      }
      const until = new Date(now.getTime() + banDurationMs(s, offences));
      const comment = `policy ${p.name}: detected on node ${item.node}, ${evidence}; offence ${offences}`;
      const ins = await tx.unsafe<{ id: bigint }[]>(
        `with ins as (
           insert into rules (cidr, action, direction, selector, selector_key, mode, expire_time, comment, create_time, update_time, write_id, created_by)
           values ($1::cidr, 1, $2, $3::text::jsonb, $4, 1, $5::timestamptz, $6, now(), now(), $7::bigint, $8)
           on conflict (cidr, direction, selector_key) do nothing returning *),
         ${changeAuditCtes({ rows: 'ins', writeId: '$7::bigint', actor: '$8', op: OP_UPSERT, action: 'rule.create', after: rowImage('ins') })}
         select id from ins`,
        [cidr, s.direction, JSON.stringify(selector), selKey, until.toISOString(), comment, wid, actor] as never[],
      );
      if (!ins[0])
        return {
          value: { outcome: 'covered' as Written['outcome'], ruleId: undefined, until: undefined, offences: offences - 1 },
          changes: 0,
        };
      await tx`
        insert into bans (policy_id, policy, source, direction, rule_id, node, offences, expire_time, pps, bps)
        values (${p.id.toString()}::bigint, ${p.name}, ${cidr}::cidr, ${s.direction}, ${ins[0].id.toString()}::bigint, ${item.node}, ${offences}, ${until},
                ${d.packetsPerSecond}, ${d.bytesPerSecond})
        on conflict (policy_id, source, direction) do update set rule_id = excluded.rule_id, node = excluded.node, offences = excluded.offences,
          expire_time = excluded.expire_time, pps = excluded.pps, bps = excluded.bps, last_time = now()`;
      return { value: { outcome: 'created' as Written['outcome'], ruleId: ins[0].id, until, offences }, changes: 1 };
    });
    const v = res.value;
    if (v.outcome === 'refused') this.log.warn({ ...base, why: v.why }, "ban refused: no room in a node's kernel table");
    const e: BanEvent = {
      ...base,
      outcome: v.outcome,
      ...(v.why !== undefined ? { why: v.why } : {}),
      ruleId: v.ruleId,
      expireTime: v.until,
      offences: v.offences,
    };
    this.log.info(
      {
        ...base,
        outcome: v.outcome,
        ruleId: v.ruleId?.toString(),
        until: v.until,
        offences: v.offences,
        revision: res.revision.toString(),
      },
      'ban',
    );
    return e;
  }
}
