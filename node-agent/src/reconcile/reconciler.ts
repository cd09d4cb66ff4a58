// Executes plans: fetch (the pinned state at start), compute (plan.ts),
// execute (datapath.applyBatch, chunks of one reused OpBatch), then commit
// the plan to the in-memory state. The only place the agent writes to the
// datapath's maps. Nothing here makes an object per rule: the start-up load
// reads the journal and the tables in chunks of columns, plans are written
// into the batch column by column.
//
// A plan the kernel refuses half-way (the datapath throws) is repaired: the
// kernel tables and the journal are read back and brought to the last good
// state the table still holds, so a NACKed change leaves nothing behind.

import type { Logger } from 'pino';
import { type Datapath, DatapathError, MAX_STORE_ID_BYTES, OpBatch, type SyncMeta } from '../datapath/datapath.js';
import { F_JOURNALED, RuleTable } from './rule-table.js';
import { type Plan, PlanError, PlanOpWriter, commitPlan, plan } from './plan.js';
import { SlotPool } from './slot-pool.js';
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

export const GRPC_CODE = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

export interface LoadSummary {
  readonly journalRules: number;
  readonly kernelEntries: number;
  readonly expired: number;
  readonly meta: SyncMeta;
}

export interface ReconcilerOptions {
  /** Ops per datapath.applyBatch call (the reused batch's size; the loop yields between calls). */
  readonly chunkOps?: number;
  readonly now?: () => number;
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Counter slots per read at start (two BigUint64Arrays of this many). */
const COUNTER_CHUNK = 65536;

/** Ops collected in chunks (repair: the differences found, in the order they will be applied). */
class OpQueue {
  readonly parts: OpBatch[] = [];
  constructor(private readonly chunk: number) {}
  /** A batch with room for one more op. */
  get room(): OpBatch {
    let last = this.parts[this.parts.length - 1];
    if (!last || last.full) {
      last = new OpBatch(this.chunk);
      this.parts.push(last);
    }
    return last;
  }
  get length(): number {
    let n = 0;
    for (const p of this.parts) n += p.length;
    return n;
  }
}

export class Reconciler {
  readonly table: RuleTable;
  slots!: SlotPool;
  private readonly chunkOps: number;
  /** The batch every plan is written into, chunk by chunk. */
  private readonly batch: OpBatch;
  private readonly now: () => number;
  private needsRepair = false;
  /** Counts for metrics. */
  readonly stats = { applies: 0, ops: 0, refusals: 0, repairs: 0, lastApplyMs: 0 };

  constructor(
    readonly dp: Datapath,
    private readonly log: Logger,
    opts: ReconcilerOptions = {},
  ) {
    this.table = new RuleTable();
    this.chunkOps = opts.chunkOps ?? 16384;
    this.batch = new OpBatch(this.chunkOps);
    this.now = opts.now ?? Date.now;
  }

  /**
   * Reads the pinned state (journal, kernel entries, counters) into memory.
   * Expired journal rules are loaded as no longer desired. Call once, first.
   */
  load(): LoadSummary {
    const dp = this.dp;
    const meta = dp.readMeta();
    const now = this.now();
    const t = this.table;
    // Everything is in scope at start: no need to record each rule as dirty.
    t.markAllDirty();
    t.reserve(dp.usage().reduce((n, u) => n + u.entries, 0));
    const slotCap = dp.capacity.counterSlots;
    /** slot -> record of the journaled rule that owns it (-1: none). */
    const owners = new Int32Array(slotCap).fill(-1);
    let expired = 0;
    let journalRules = 0;
    // Chunks of columns: no object per rule, whatever the size of the pinned state.
    for (const b of dp.readJournalChunks()) {
      for (let i = 0; i < b.length; i++) {
        journalRules++;
        const exp = b.expire[i]!;
        const desired = !(exp > 0 && exp <= now);
        if (!desired) expired++;
        const slot = b.slot[i]!;
        if (slot >= slotCap || owners[slot] !== -1) {
          // A journal entry without a usable slot: treat it as a new rule.
          const j = b.op(i);
          this.log.warn({ ruleId: String(b.id[i]), slot }, 'journal rule has an unusable counter slot; it gets a new one');
          if (desired && j.kind === 'journal.upsert') {
            t.upsert({
              id: j.rule.id,
              direction: j.rule.direction,
              prefix: j.rule.prefix,
              action: j.rule.action,
              mode: j.rule.mode,
              expireUnixMs: j.rule.expireUnixMs,
            });
          }
          continue;
        }
        owners[slot] = t.loadJournalOp(b, i, desired);
      }
    }
    let kernelEntries = 0;
    for (const b of dp.readEntryChunks()) {
      for (let i = 0; i < b.length; i++) t.loadKernelOp(b, i);
      kernelEntries += b.length;
    }
    t.dirtyAll = true;
    this.slots = new SlotPool(slotCap);
    const nonZero = new Uint8Array(slotCap);
    if (!dp.createdFresh) {
      const packets = new BigUint64Array(Math.min(COUNTER_CHUNK, slotCap));
      const bytes = new BigUint64Array(packets.length);
      for (let first = 0; first < slotCap; first += packets.length) {
        const n = dp.readRuleCountersInto(first, packets, bytes);
        for (let k = 0; k < n; k++) if (packets[k] !== 0n || bytes[k] !== 0n) nonZero[first + k] = 1;
      }
    }
    this.slots.load(owners, (s) => nonZero[s] === 1);
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
      // The plan's ops in order, one batch at a time; the meta goes with the last.
      // Late adds follow the deletes that make room for them in the same stream:
      // the datapath checks capacity in op order.
      const writer = new PlanOpWriter(this.table, pl);
      const b = this.batch;
      let chunks = 0;
      for (;;) {
        b.clear();
        if (writer.fill(b)) break;
        this.dp.applyBatch(b);
        chunks++;
        await yieldToLoop();
      }
      this.dp.applyBatch(b, meta ? this.pinnable(meta) : undefined);
      b.clear();
      commitPlan(this.table, this.slots, pl);
      const ms = performance.now() - t0;
      this.stats.applies++;
      this.stats.ops += pl.opCount;
      this.stats.lastApplyMs = ms;
      if (pl.opCount > 100_000) releaseTransientMemory();
      if (chunks > 0 || ms > 500)
        this.log.info({ ops: pl.opCount, chunks: chunks + 1, ms: Math.round(ms), planMs: Math.round(planMs), full: pl.full }, 'applied');
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

  /**
   * The meta as pinned. The pins hold store ids of up to MAX_STORE_ID_BYTES
   * (a control plane's are 36-character UUIDs); a longer one is pinned as
   * "no store", so a restart asks for a snapshot (always correct).
   */
  private pinnable(meta: SyncMeta): SyncMeta {
    if (Buffer.byteLength(meta.storeId, 'utf8') <= MAX_STORE_ID_BYTES) return meta;
    this.log.warn({ storeId: meta.storeId, max: MAX_STORE_ID_BYTES }, 'store id too long to pin: a restart will resume from a snapshot');
    return { revision: 0n, storeId: '' };
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
    if (e instanceof DatapathError) {
      const full = e.code === 'E2BIG' || e.code === 'ENOSPC' || e.code === 'ENOMEM';
      return {
        ok: false,
        code: full ? GRPC_CODE.RESOURCE_EXHAUSTED : GRPC_CODE.FAILED_PRECONDITION,
        reason: full ? 'KERNEL_MAP_FULL' : 'KERNEL_REFUSED',
        message: `the kernel refused the change: ${e.message}`,
        metadata: { errno: e.code, op: e.op, target: e.target },
        partial,
      };
    }
    this.log.error({ err: e }, 'unexpected error while applying');
    return {
      ok: false,
      code: GRPC_CODE.INTERNAL,
      reason: 'INTERNAL',
      message: 'internal error while applying the change (see the agent log)',
      metadata: {},
      partial,
    };
  }

  /**
   * Reads the kernel tables and the journal back (in chunks of columns) and
   * brings them to the last good state held in memory (pKernel and the
   * journaled rule versions): journal first, then entry upserts, then entry
   * deletes.
   */
  repair(): void {
    const t = this.table;
    const chunk = this.chunkOps;
    const jq = new OpQueue(chunk);
    const uq = new OpQueue(chunk);
    const dq = new OpQueue(chunk);
    // Kernel entries: wrong or unknown ones are rewritten or deleted; what is missing is added.
    const seenP = new Uint8Array(t.pHigh);
    for (const b of this.dp.readEntryChunks(chunk)) {
      for (let i = 0; i < b.length; i++) {
        const p = t.pfxOfOp(b, i);
        const want = p === -1 || !t.pfxLive(p) ? -1 : t.pKernel[p]!;
        if (want === -1) {
          const tb = b.table[i]! as 0 | 1 | 2 | 3;
          if ((tb & 1) === 0) dq.room.entryDelete(tb, b.addr4[i]!, 0, b.len[i]!);
          else dq.room.entryDelete(tb, b.addr6, i * 16, b.len[i]!);
          continue;
        }
        seenP[p] = 1;
        if (want !== b.slot[i]! * 4 + (b.attrs[i]! & 3)) t.writeEntryUpsert(uq.room, p, want);
      }
    }
    for (let p = 0; p < t.pHigh; p++) {
      if (!t.pfxLive(p) || seenP[p] === 1) continue;
      const k = t.pKernel[p]!;
      if (k !== -1) t.writeEntryUpsert(uq.room, p, k);
    }
    // Journal: rules not journaled in memory leave; changed or missing ones are written.
    const seenR = new Uint8Array(t.rHigh);
    for (const b of this.dp.readJournalChunks(chunk)) {
      for (let i = 0; i < b.length; i++) {
        const r = t.find(b.id[i]!);
        if (r === -1 || (t.flags[r]! & F_JOURNALED) === 0) {
          jq.room.journalDelete(b.id[i]!);
          continue;
        }
        seenR[r] = 1;
        if (!t.sameJournalOp(r, b, i)) t.writeJournalVersion(jq.room, r);
      }
    }
    for (let r = 0; r < t.rHigh; r++) if ((t.flags[r]! & F_JOURNALED) !== 0 && seenR[r] !== 1) t.writeJournalVersion(jq.room, r);
    const ops = jq.length + uq.length + dq.length;
    for (const q of [jq, uq, dq]) for (const b of q.parts) if (b.length > 0) this.dp.applyBatch(b);
    this.needsRepair = false;
    this.stats.repairs++;
    this.log.info({ ops }, 'kernel and journal restored to the last good state');
  }
}
