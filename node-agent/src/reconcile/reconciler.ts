// Executes plans: fetch (the pinned state at start), compute (plan.ts),
// execute (datapath.apply in large chunks), then commit the plan to the
// in-memory state. The only place the agent writes to the datapath's maps.
//
// A plan the kernel refuses half-way (the datapath throws) is repaired: the
// kernel tables and the journal are read back and brought to the last good
// state the table still holds, so a NACKed change leaves nothing behind.

import type { Logger } from 'pino';
import { prefixKey } from '../../../common/src/cidr.js';
import type { Datapath, JournalRule, KernelEntry, MapOp, SyncMeta } from '../datapath/datapath.js';
import { F_JOURNALED, RuleTable } from './rule-table.js';
import { type Plan, PlanError, commitPlan, plan, planOps } from './plan.js';
import { SlotPool } from './slot-pool.js';
import { MetaCodec } from './meta-codec.js';
import { releaseTransientMemory } from '../memory.js';

export interface ReconcileOk {
  readonly ok: true;
  readonly opCount: number;
  readonly ms: number;
  readonly full: boolean;
}

export interface ReconcileFailed {
  readonly ok: false;
  /** google.rpc.Code number. */
  readonly code: number;
  readonly reason: string;
  readonly message: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** True if the kernel refused part-way (and was repaired), false if refused before any op. */
  readonly partial: boolean;
}

export type ReconcileResult = ReconcileOk | ReconcileFailed;

export const GRPC_CODE = { OK: 0, INVALID_ARGUMENT: 3, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, INTERNAL: 13, UNAVAILABLE: 14 } as const;

export interface LoadSummary {
  readonly journalRules: number;
  readonly kernelEntries: number;
  readonly expired: number;
  readonly meta: SyncMeta;
}

export interface ReconcilerOptions {
  /** Ops per datapath.apply call: small enough that the op objects die young (cheap GC, low RSS). */
  readonly chunkOps?: number;
  readonly now?: () => number;
  /** Translates store ids longer than the pinned 16 bytes (see meta-codec.ts). */
  readonly metaCodec?: MetaCodec;
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function sameJournal(a: JournalRule, b: JournalRule): boolean {
  return (
    a.id === b.id &&
    a.direction === b.direction &&
    a.action === b.action &&
    a.mode === b.mode &&
    a.expireUnixMs === b.expireUnixMs &&
    a.slot === b.slot &&
    prefixKey(a.prefix) === prefixKey(b.prefix)
  );
}

function entryKey(e: { direction: string; prefix: KernelEntry['prefix'] }): string {
  return `${e.direction} ${prefixKey(e.prefix)}`;
}

export class Reconciler {
  readonly table: RuleTable;
  slots!: SlotPool;
  private readonly chunkOps: number;
  private readonly now: () => number;
  private readonly codec: MetaCodec;
  private needsRepair = false;
  /** Counts for metrics. */
  readonly stats = { applies: 0, ops: 0, refusals: 0, repairs: 0, lastApplyMs: 0 };

  constructor(
    readonly dp: Datapath,
    private readonly log: Logger,
    opts: ReconcilerOptions = {},
  ) {
    this.table = new RuleTable();
    this.chunkOps = opts.chunkOps ?? 4096;
    this.now = opts.now ?? Date.now;
    this.codec = opts.metaCodec ?? new MetaCodec(undefined, '');
  }

  /**
   * Reads the pinned state (journal, kernel entries, counters) into memory.
   * Expired journal rules are loaded as no longer desired. Call once, first.
   */
  load(): LoadSummary {
    const dp = this.dp;
    const meta = this.codec.fromPinned(dp.readMeta());
    const now = this.now();
    const t = this.table;
    // Everything is in scope at start: no need to record each rule as dirty.
    t.markAllDirty();
    const slotCap = dp.capacity.counterSlots;
    /** slot -> record of the journaled rule that owns it (-1: none). */
    const owners = new Int32Array(slotCap).fill(-1);
    let expired = 0;
    // One read at a time, dropped once in the table: a million journal rules
    // and a million entries as objects at once would double the peak memory.
    let journal: JournalRule[] | undefined = dp.readJournal();
    const journalRules = journal.length;
    t.reserve(journalRules);
    for (const j of journal) {
      const desired = !(j.expireUnixMs > 0 && j.expireUnixMs <= now);
      if (!desired) expired++;
      if (j.slot < 0 || j.slot >= slotCap || owners[j.slot] !== -1) {
        // A journal entry without a usable slot: treat it as a new rule.
        this.log.warn({ ruleId: String(j.id), slot: j.slot }, 'journal rule has an unusable counter slot; it gets a new one');
        if (desired) t.upsert({ id: j.id, direction: j.direction, prefix: j.prefix, action: j.action, mode: j.mode, expireUnixMs: j.expireUnixMs });
        continue;
      }
      owners[j.slot] = t.loadJournal(j, desired);
    }
    journal = undefined;
    let entries: KernelEntry[] | undefined = dp.readEntries();
    const kernelEntries = entries.length;
    for (const e of entries) t.loadKernel(e);
    entries = undefined;
    t.dirtyAll = true;
    this.slots = new SlotPool(slotCap);
    let nonZero: (s: number) => boolean = () => false;
    if (!dp.createdFresh) {
      const c = dp.readRuleCounters(slotCap);
      nonZero = (s) => c.packets[s] !== 0n || c.bytes[s] !== 0n;
    }
    this.slots.load(owners, nonZero);
    return { journalRules, kernelEntries, expired, meta };
  }

  /**
   * Applies every pending change of the desired set (and writes `meta`).
   * Resolves with the outcome; the kernel holds the last good state when it
   * fails. Callers serialize calls (one at a time).
   */
  async reconcile(meta?: SyncMeta): Promise<ReconcileResult> {
    const t0 = performance.now();
    if (this.needsRepair) {
      try {
        this.repair();
      } catch (e) {
        return this.failure(e, true);
      }
    }
    let pl: Plan;
    let planMs = 0;
    try {
      const tp = performance.now();
      pl = this.plan();
      planMs = performance.now() - tp;
    } catch (e) {
      this.stats.refusals++;
      return this.failure(e, false);
    }
    if (pl.opCount === 0 && !meta) {
      commitPlan(this.table, this.slots, pl);
      return { ok: true, opCount: 0, ms: performance.now() - t0, full: pl.full };
    }
    this.slots.lock();
    try {
      let chunk: MapOp[] = [];
      let chunks = 0;
      const flush = async (): Promise<void> => {
        this.dp.apply(chunk);
        chunk = [];
        chunks++;
        await yieldToLoop();
      };
      for (const op of planOps(this.table, pl, 'main')) {
        chunk.push(op);
        if (chunk.length >= this.chunkOps) await flush();
      }
      if (pl.upsertsLate.length > 0) {
        // Adds that need the room the deletes made: a call of their own.
        if (chunk.length > 0) await flush();
        for (const op of planOps(this.table, pl, 'late')) {
          chunk.push(op);
          if (chunk.length >= this.chunkOps) await flush();
        }
      }
      this.dp.apply(chunk, meta ? this.codec.toPinned(meta) : undefined);
      commitPlan(this.table, this.slots, pl);
      const ms = performance.now() - t0;
      this.stats.applies++;
      this.stats.ops += pl.opCount;
      this.stats.lastApplyMs = ms;
      if (pl.opCount > 100_000) releaseTransientMemory();
      if (chunks > 0 || ms > 500) this.log.info({ ops: pl.opCount, chunks: chunks + 1, ms: Math.round(ms), planMs: Math.round(planMs), full: pl.full }, 'applied');
      return { ok: true, opCount: pl.opCount, ms, full: pl.full };
    } catch (e) {
      this.stats.refusals++;
      this.log.warn({ err: e }, 'the kernel refused a change part-way; restoring the last good state');
      try {
        this.repair();
      } catch (re) {
        this.needsRepair = true;
        this.log.error({ err: re }, 'restoring the last good state failed; will retry before the next change');
      }
      return this.failure(e, true);
    } finally {
      this.slots.unlock();
    }
  }

  private plan(): Plan {
    try {
      return plan({ table: this.table, slots: this.slots, capacity: this.dp.capacity });
    } catch (e) {
      // Deleted rules' slots wait for their final counter report; when the
      // free ones run out, take those back rather than refuse.
      if (e instanceof PlanError && e.reason === 'COUNTER_SLOTS_EXHAUSTED' && this.slots.retired.size > 0) {
        const need = Number(e.metadata.needed) - this.slots.available;
        const got = this.slots.reclaim(need);
        this.log.warn({ reclaimed: got }, 'counter slots ran out: reusing slots of deleted rules before their final report');
        return plan({ table: this.table, slots: this.slots, capacity: this.dp.capacity });
      }
      throw e;
    }
  }

  private failure(e: unknown, partial: boolean): ReconcileFailed {
    if (e instanceof PlanError) {
      return { ok: false, code: GRPC_CODE[e.code], reason: e.reason, message: e.message, metadata: e.metadata, partial };
    }
    const err = e as Error & { code?: string; errno?: number; op?: string; target?: string };
    if (err && err.name === 'DatapathError') {
      const full = err.code === 'E2BIG' || err.code === 'ENOSPC' || err.code === 'ENOMEM';
      return {
        ok: false,
        code: full ? GRPC_CODE.RESOURCE_EXHAUSTED : GRPC_CODE.FAILED_PRECONDITION,
        reason: full ? 'KERNEL_MAP_FULL' : 'KERNEL_REFUSED',
        message: `the kernel refused the change: ${err.message}`,
        metadata: { errno: String(err.code ?? ''), op: String(err.op ?? ''), target: String(err.target ?? '') },
        partial,
      };
    }
    this.log.error({ err: e }, 'unexpected error while applying');
    return { ok: false, code: GRPC_CODE.INTERNAL, reason: 'INTERNAL', message: 'internal error while applying the change (see the agent log)', metadata: {}, partial };
  }

  /**
   * Reads the kernel tables and the journal back and brings them to the last
   * good state held in memory (pKernel and the journaled rule versions).
   */
  repair(): void {
    const t = this.table;
    const want = new Map<string, KernelEntry>();
    for (let p = 0; p < t.pHigh; p++) {
      if (!t.pfxLive(p)) continue;
      const k = t.pKernel[p]!;
      if (k === -1) continue;
      const e: KernelEntry = {
        direction: t.pfxDirection(p),
        prefix: t.pfxPrefix(p),
        action: (k & 2) !== 0 ? 'allow' : 'deny',
        mode: (k & 1) !== 0 ? 'monitor' : 'enforce',
        slot: k >>> 2,
      };
      want.set(entryKey(e), e);
    }
    const ups: MapOp[] = [];
    const dels: MapOp[] = [];
    const have = new Map<string, KernelEntry>();
    for (const e of this.dp.readEntries()) have.set(entryKey(e), e);
    for (const [k, e] of want) {
      const h = have.get(k);
      if (!h || h.action !== e.action || h.mode !== e.mode || h.slot !== e.slot) ups.push({ kind: 'entry.upsert', entry: e });
    }
    for (const [k, h] of have) if (!want.has(k)) dels.push({ kind: 'entry.delete', direction: h.direction, prefix: h.prefix });
    const jwant = new Map<bigint, JournalRule>();
    for (let r = 0; r < t.rHigh; r++) if ((t.flags[r]! & F_JOURNALED) !== 0) jwant.set(t.id[r]!, t.journalVersion(r));
    const jops: MapOp[] = [];
    const jhave = new Map<bigint, JournalRule>();
    for (const j of this.dp.readJournal()) jhave.set(j.id, j);
    for (const id of jhave.keys()) if (!jwant.has(id)) jops.push({ kind: 'journal.delete', id });
    for (const [id, j] of jwant) {
      const h = jhave.get(id);
      if (!h || !sameJournal(h, j)) jops.push({ kind: 'journal.upsert', rule: j });
    }
    const ops = [...jops, ...ups, ...dels];
    if (ops.length > 0) this.dp.apply(ops);
    this.needsRepair = false;
    this.stats.repairs++;
    this.log.info({ ops: ops.length }, 'kernel and journal restored to the last good state');
  }
}
