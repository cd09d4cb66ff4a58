// Executes plans: compute (plan.ts), execute (datapath.applyBatch, chunks
// of one reused OpBatch), then commit the plan to the in-memory state. The
// only place the agent writes to the datapath's maps. Opened with the pinned
// state read back (pin-loader.ts), so a reconciler is always loaded. Nothing
// here makes an object per rule: plans are written into the batch column by
// column.
//
// A plan the kernel refuses half-way (the datapath throws) is repaired: the
// kernel tables and the journal are read back and brought to the last good
// state the table still holds, so a NACKed change leaves nothing behind.

import type { Logger } from 'pino';
import { type Datapath, DatapathError, MAX_STORE_ID_BYTES, OpBatch, type SyncMeta } from '../datapath/datapath.js';
import { type LoadSummary, type PinnedState, loadPinned } from './pin-loader.js';
import { PlanError, commitPlan, plan } from './plan.js';
import { PlanOpWriter } from './plan-ops.js';
import type { Plan } from './plan-value.js';
import { F_JOURNALED } from './rule-flags.js';
import { type ExpirySink, RuleTable } from './rule-table.js';
import type { SlotPool } from './slot-pool.js';
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

/** The datapath calls a reconciler makes: the start-up load, applies, and the read-back of a repair. */
export type ReconcileDatapath = PinnedState & Pick<Datapath, 'applyBatch'>;

export interface ReconcilerOptions {
  /** Ops per datapath.applyBatch call (the reused batch's size; the loop yields between calls). */
  readonly chunkOps?: number;
  /** Clock for rules that expired while no agent ran (Unix ms). */
  readonly now?: () => number;
  /** Where desired rules' expiries go (the engine's expiry queue); none: nothing expires locally. */
  readonly expiry?: ExpirySink;
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

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
  private readonly chunkOps: number;
  /** The batch every plan is written into, chunk by chunk. */
  private readonly batch: OpBatch;
  private needsRepair = false;
  /** Counts for metrics. */
  readonly stats = { applies: 0, ops: 0, refusals: 0, repairs: 0, lastApplyMs: 0 };

  private constructor(
    private readonly dp: ReconcileDatapath,
    private readonly log: Logger,
    /** The rule state (desired, journal, kernel); the reconciler commits applied plans into it. */
    readonly table: RuleTable,
    /** Counter slots; the counter reporter releases retired ones. */
    readonly slots: SlotPool,
    /** What the pins held at open. */
    readonly loaded: LoadSummary,
    chunkOps: number,
  ) {
    this.chunkOps = chunkOps;
    this.batch = new OpBatch(chunkOps);
  }

  /**
   * A reconciler with the pinned state (journal, kernel entries, counters)
   * read back into a new rule table and slot pool. Expired journal rules are
   * loaded as no longer desired. Nothing is applied yet: the first
   * reconcile() applies the difference between the journal and the kernel.
   */
  static async open(dp: ReconcileDatapath, log: Logger, opts: ReconcilerOptions = {}): Promise<Reconciler> {
    const table = new RuleTable(opts.expiry);
    const { summary, slots } = loadPinned(dp, table, log, (opts.now ?? Date.now)());
    return new Reconciler(dp, log, table, slots, summary, opts.chunkOps ?? 16384);
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
        await this.repair();
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
        await this.dp.applyBatch(b);
        chunks++;
        await yieldToLoop();
      }
      await this.dp.applyBatch(b, meta ? this.pinnable(meta) : undefined);
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
        await this.repair();
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
  async repair(): Promise<void> {
    const t = this.table;
    const chunk = this.chunkOps;
    const jq = new OpQueue(chunk);
    const uq = new OpQueue(chunk);
    const dq = new OpQueue(chunk);
    // Kernel entries: wrong or unknown ones are rewritten or deleted; what is missing is added.
    const ps = t.prefixes;
    const kernel = t.kernel;
    const seenP = new Uint8Array(ps.high);
    for (const b of this.dp.readEntryChunks(chunk)) {
      for (let i = 0; i < b.length; i++) {
        const p = t.prefixOfOp(b, i);
        const want = p === -1 || !ps.live(p) ? -1 : kernel.entryOf(p);
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
    for (let p = 0; p < ps.high; p++) {
      if (!ps.live(p) || seenP[p] === 1) continue;
      const k = kernel.entryOf(p);
      if (k !== -1) t.writeEntryUpsert(uq.room, p, k);
    }
    // Journal: rules not journaled in memory leave; changed or missing ones are written.
    const rs = t.rules;
    const seenR = new Uint8Array(rs.high);
    for (const b of this.dp.readJournalChunks(chunk)) {
      for (let i = 0; i < b.length; i++) {
        const r = rs.find(b.id[i]!);
        if (r === -1 || (rs.flags[r]! & F_JOURNALED) === 0) {
          jq.room.journalDelete(b.id[i]!, b.slot[i]!);
          continue;
        }
        seenR[r] = 1;
        if (!t.sameJournalOp(r, b, i)) t.writeJournaledUpsert(jq.room, r);
      }
    }
    for (let r = 0; r < rs.high; r++) if ((rs.flags[r]! & F_JOURNALED) !== 0 && seenR[r] !== 1) t.writeJournaledUpsert(jq.room, r);
    const ops = jq.length + uq.length + dq.length;
    for (const q of [jq, uq, dq]) for (const b of q.parts) if (b.length > 0) await this.dp.applyBatch(b);
    this.needsRepair = false;
    this.stats.repairs++;
    this.log.info({ ops }, 'kernel and journal restored to the last good state');
  }
}
