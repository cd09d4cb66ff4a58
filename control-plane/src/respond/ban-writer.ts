// Detections become fleet-wide bans (issue 18). A detection an agent reports
// is queued per policy (one entry per source, a later detection refreshing
// it) and written at most max_bans_per_second per policy (the rest wait in
// the queue: deferred, counted, not lost).
//
// Bounded under attack: each tick takes every ban that is due over all
// policies (up to each one's cap) and writes them together, ONE transaction
// = one revision = one delta to the agents (ban-group.ts: exemptions, the
// extension of a ban in force, offences and escalation, capacity, audit as
// policy:NAME, the /24 merge in ban-merge.ts), so a flood costs a commit and
// a fan-out every GROUP_MS, not one per ban. One group is written at a time
// (one connection of the write pool: operators' writes keep the others),
// and a group starts at most every GROUP_MS (an idle writer writes a lone
// ban at once). A group whose transaction fails is written by no part: its
// bans go back to the front of their queues and are tried again.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import { formatPrefix, type Prefix } from '../../../common/src/cidr.js';
import type { Detection } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { LockoutGuard } from '../lockout/lockout-guard.js';
import type { CapacityGuard } from '../services/capacity-guard.js';
import { type BanEvent, type BanItem, writeBanGroup } from './ban-group.js';
import type { PolicyRow } from './policy-store.js';

export type { BanEvent, BanOutcome } from './ban-group.js';

/** Sources waiting per policy at most (the oldest give way, counted as dropped). */
const MAX_QUEUED = 100_000;
const TICK_MS = 20;
/** A group starts at most this often: at most 10 ban revisions a second, whatever the caps. */
const GROUP_MS = 100;
const MAX_BACKOFF_MS = 5_000;
/** Bans in one transaction at most (a cap of 10,000/s is 1,000 per group). */
const MAX_GROUP = 2_000;

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

export class BanWriter {
  private readonly queues = new Map<bigint, PolicyQueue>();
  private timer: NodeJS.Timeout | undefined;
  private working = false;
  private lastGroup = 0;
  /** After a failed group: the next waits this much longer (doubling to MAX_BACKOFF_MS; 0 after a success). */
  private backoffMs = 0;
  /** Per policy id: what the store's counts have not got yet (flushed by the caller). */
  readonly unflushed = new Map<bigint, BanCounts>();
  readonly stats = { deferred: 0, dropped: 0, written: 0, failed: 0, groups: 0 };
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

  /** Every ban the policies' rates allow now (round robin over the policies, at most MAX_GROUP). */
  private takeDue(): { key: string; item: BanItem }[] {
    const out: { key: string; item: BanItem }[] = [];
    const now = Date.now();
    for (const [id, q] of this.queues) {
      const p = this.policyById(id);
      if (!p) {
        this.queues.delete(id);
        continue;
      }
      const rate = p.spec.maxBansPerSecond;
      q.tokens = Math.min(rate, q.tokens + ((now - q.at) / 1000) * rate);
      q.at = now;
      while (q.tokens >= 1 && q.items.size > 0 && out.length < MAX_GROUP) {
        const [key, it] = q.items.entries().next().value as [string, Pending];
        q.items.delete(key);
        q.tokens -= 1;
        out.push({ key, item: { p, node: it.node, d: it.d, prefix: it.prefix } });
      }
    }
    // The first policy goes last next time (a full group must not always favour it).
    const first = this.queues.keys().next();
    if (!first.done) {
      const q = this.queues.get(first.value)!;
      this.queues.delete(first.value);
      this.queues.set(first.value, q);
    }
    return out;
  }

  /** A group that was not written: its bans go back to the front of their queues (a newer detection of a source wins), tokens refunded. */
  private requeue(group: readonly { key: string; item: BanItem }[]): void {
    const back = new Map<bigint, { key: string; item: BanItem }[]>();
    for (const g of group) {
      const l = back.get(g.item.p.id);
      if (l) l.push(g);
      else back.set(g.item.p.id, [g]);
    }
    for (const [id, l] of back) {
      const q = this.queues.get(id);
      if (!q) continue;
      const rebuilt = new Map<string, Pending>();
      for (const { key, item } of l) if (!q.items.has(key)) rebuilt.set(key, { node: item.node, d: item.d, prefix: item.prefix });
      for (const [k, v] of q.items) rebuilt.set(k, v);
      q.items.clear();
      for (const [k, v] of rebuilt) q.items.set(k, v);
      q.tokens = Math.min(l[0]!.item.p.spec.maxBansPerSecond, q.tokens + l.length);
    }
  }

  /** Writes the bans that are due now as one group (at most one group in flight, one every GROUP_MS). */
  async work(): Promise<void> {
    if (this.working || Date.now() - this.lastGroup < GROUP_MS + this.backoffMs) return;
    this.working = true;
    try {
      const group = this.takeDue();
      if (group.length === 0) return;
      this.lastGroup = Date.now();
      let events: BanEvent[];
      try {
        ({ events } = await writeBanGroup(
          { sql: this.sql, readSql: this.readSql, guard: this.guard, capacity: this.capacity, log: this.log },
          group.map((g) => g.item),
        ));
      } catch (err) {
        this.stats.failed += group.length;
        this.requeue(group);
        this.backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(GROUP_MS, this.backoffMs * 2));
        this.log.warn({ err, bans: group.length }, 'ban group failed: nothing written, its bans stay queued');
        return;
      }
      this.stats.groups++;
      this.backoffMs = 0;
      const ids = new Map(group.map((g) => [g.item.p.name, g.item.p.id]));
      for (const e of events) {
        const id = ids.get(e.policy)!;
        if (e.outcome !== 'merged') this.stats.written++;
        if (e.outcome === 'created' || e.outcome === 'extended') this.count(id, 'bans');
        if (e.outcome === 'exempted') this.count(id, 'exempted');
        this.onEvent?.(e);
      }
    } finally {
      this.stats.deferred = this.queued;
      this.working = false;
    }
  }
}
