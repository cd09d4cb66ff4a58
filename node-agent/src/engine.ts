// The agent's single writer and the one owner of its rule state: the rule
// table, the counter slots, the expiry queue and the reconciler that applies
// them all belong to the engine, opened together from the pins. Everything
// that changes the desired set comes in as an intent (a Sync stream's start,
// snapshot chunk, delta, InSync or loss; a local expiry) and runs as a task
// in one queue; reconciles run between tasks, so a plan never sees the state
// move under it. Each revision is reconciled on its own (ACK or NACK per
// revision); a resume catch-up is applied once, at InSync.
//
// It tracks two revisions: `applied` (what the kernel and the pinned meta
// hold) and `desired` (the revision the desired set corresponds to). The
// desired set is "consistent" except in the middle of a snapshot, of a
// revision split into parts, or of a resume catch-up; reconciles wait for it.

import type { Logger } from 'pino';
import type { SyncMeta } from './datapath/datapath.js';
import { ExpiryQueue } from './expiry/expiry-queue.js';
import type { LoadSummary } from './reconcile/pin-loader.js';
import { type ReconcileDatapath, type ReconcileFailed, Reconciler, type ReconcileOk } from './reconcile/reconciler.js';
import type { RuleView } from './reconcile/rule-records.js';
import type { RuleCounts, RuleTable } from './reconcile/rule-table.js';
import type { RuleSpec } from './reconcile/rule-flags.js';
import type { SlotPool } from './reconcile/slot-pool.js';
import { type LocalRuleOwner, localOwnerOf } from './reconcile/local-rules.js';
import { applyRawRules } from './sync/raw-rules.js';
import type { RawDelta, RawRules, RawSnapshotChunk } from './sync/sync-codec.js';

export interface EngineListener {
  /** The kernel holds `meta` (after an apply, or at once if nothing was pending). */
  applied(meta: SyncMeta, result: ReconcileOk): void;
  /** The kernel could not take the desired set of `meta`; it keeps `applied`. */
  refused(meta: SyncMeta, result: ReconcileFailed): void;
}

/** One Sync stream as the engine sees it: a token the sync client passes with each intent. */
export interface SyncStream {
  /** SyncStart's store id ('' before SyncStart). */
  readonly storeId: string;
  /** The snapshot is in the desired set, or InSync arrived: live deltas are applied as they come. */
  readonly synced: boolean;
  /** Rules received in this stream's snapshot so far. */
  readonly snapshotRules: number;
}

class StreamState implements SyncStream {
  storeId = '';
  synced = false;
  snapshotRules = 0;
  /** Highest revision whose parts all arrived during catch-up. */
  lastCompleteRev = 0n;
  /** The stream ended: its tasks still queued do nothing. */
  lost = false;
  readonly openedAt = performance.now();
}

export interface EngineOptions {
  readonly now?: () => number;
  /** Ops per datapath.applyBatch call (see ReconcilerOptions). */
  readonly chunkOps?: number;
}

type Task = () => void | Promise<void>;

/** Longest a timer waits before re-checking the clock. */
const MAX_TIMER_MS = 60_000;

export class Engine {
  private readonly table: RuleTable;
  private readonly expiry: ExpiryQueue;
  private appliedMeta: SyncMeta;
  private desiredMeta: SyncMeta;
  /** False while the desired set is half-way through a snapshot, parts or catch-up. */
  private consistentFlag = true;
  private lastErrorValue = '';
  private lastErrorAtValue = 0;
  /** Last refusal, until a later apply succeeds. */
  private lastRefusalValue: ReconcileFailed | undefined;
  private readonly queue: Task[] = [];
  private draining = false;
  private reconcileWanted = false;
  private forceNotify = false;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiryAt = Infinity;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  private readonly listeners: EngineListener[] = [];
  readonly stats = { expired: 0, tasks: 0 };
  /** The rule table's sizes (health, metrics). */
  readonly rules: RuleCounts;
  /** Rule ids by record (counter reports). */
  readonly ruleIds: Pick<RuleView, 'idOf'>;
  /** Counter slots: the counter reporter reads owners and releases retired slots. */
  readonly slots: SlotPool;
  /** What the pins held at open. */
  readonly loaded: LoadSummary;

  private constructor(
    private readonly rec: Reconciler,
    expiry: ExpiryQueue,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    this.table = rec.table;
    this.rules = rec.table;
    this.ruleIds = rec.table.rules;
    this.slots = rec.slots;
    this.loaded = rec.loaded;
    this.expiry = expiry;
    this.appliedMeta = rec.loaded.meta;
    this.desiredMeta = rec.loaded.meta;
    // The pinned rules' expiries.
    this.armExpiry();
  }

  /**
   * Opens the engine on a datapath: the pinned state read back (the kernel
   * holds `loaded.meta`), nothing applied yet (requestReconcile() applies the
   * difference between the journal and the kernel).
   */
  static async open(dp: ReconcileDatapath, log: Logger, opts: EngineOptions = {}): Promise<Engine> {
    const now = opts.now ?? Date.now;
    const expiry = new ExpiryQueue();
    const rec = await Reconciler.open(dp, log.child({ component: 'reconcile' }), {
      expiry,
      now,
      ...(opts.chunkOps !== undefined ? { chunkOps: opts.chunkOps } : {}),
    });
    return new Engine(rec, expiry, log.child({ component: 'engine' }), now);
  }

  /** What the kernel and the pinned meta hold. */
  get applied(): SyncMeta {
    return this.appliedMeta;
  }
  /** The revision the desired set corresponds to. */
  get desired(): SyncMeta {
    return this.desiredMeta;
  }
  get consistent(): boolean {
    return this.consistentFlag;
  }
  get lastError(): string {
    return this.lastErrorValue;
  }
  get lastErrorAt(): number {
    return this.lastErrorAtValue;
  }
  get lastRefusal(): ReconcileFailed | undefined {
    return this.lastRefusalValue;
  }
  get pendingExpiries(): number {
    return this.expiry.size;
  }
  /** Applies, ops, refusals, repairs, last apply time. */
  get applyStats(): Readonly<Reconciler['stats']> {
    return this.rec.stats;
  }

  addListener(l: EngineListener): void {
    this.listeners.push(l);
  }

  // ------------------------------------------------------------ Sync intents

  /** A new stream to the control plane (its Hello is being sent). */
  openStream(): SyncStream {
    return new StreamState();
  }

  /** SyncStart: a snapshot follows (it replaces the desired set), or catch-up deltas then InSync. */
  beginStream(stream: SyncStream, mode: 'snapshot' | 'resume', storeId: string): void {
    const s = this.state(stream);
    s.storeId = storeId;
    void this.run(() => {
      if (s.lost) return;
      this.consistentFlag = false;
      if (mode === 'snapshot') this.table.beginSnapshot(0);
    });
  }

  /** A snapshot chunk; the last one makes the desired set that of its revision. */
  snapshotChunk(stream: SyncStream, c: RawSnapshotChunk): void {
    const s = this.state(stream);
    void this.run(() => {
      if (s.lost) return;
      const t = this.table;
      if (!t.snapshotInProgress) {
        this.log.warn('snapshot chunk outside a snapshot: ignored');
        return;
      }
      if (s.snapshotRules === 0 && c.totalRules > 0n) t.reserve(Number(c.totalRules));
      this.applyRules(c.rules);
      s.snapshotRules += c.rules.count;
      if (c.last) {
        this.log.info(
          { rules: s.snapshotRules, revision: String(c.revision), receivedMs: Math.round(performance.now() - s.openedAt) },
          'snapshot received',
        );
        t.endSnapshot();
        s.synced = true;
        this.setDesired({ revision: c.revision, storeId: s.storeId });
      }
    });
  }

  /** A delta (or one part of a revision split into parts: `more`). Once synced, each complete revision is reconciled. */
  delta(stream: SyncStream, d: RawDelta): void {
    const s = this.state(stream);
    void this.run(() => {
      if (s.lost) return;
      this.applyRules(d.upserts);
      for (const id of d.deletes) this.table.remove(id);
      if (d.more) {
        this.consistentFlag = false;
        return;
      }
      s.lastCompleteRev = d.revision;
      if (s.synced) this.setDesired({ revision: d.revision, storeId: s.storeId });
    });
  }

  /** InSync: the catch-up is complete at `revision`. */
  inSync(stream: SyncStream, revision: bigint): void {
    const s = this.state(stream);
    void this.run(() => {
      if (s.lost) return;
      if (this.table.snapshotInProgress) this.table.endSnapshot();
      s.synced = true;
      this.setDesired({ revision, storeId: s.storeId });
    });
  }

  /**
   * The stream ended (or never started). Whatever arrived stays desired; a
   * snapshot or parts cut short leave the desired set as a mix of old and new
   * rules of revisions the next stream resumes from. The kernel keeps
   * enforcing; the engine reconciles what it has.
   */
  streamLost(stream: SyncStream): void {
    const s = this.state(stream);
    s.lost = true;
    void this.run(() => {
      const t = this.table;
      if (t.snapshotInProgress) t.abortSnapshot();
      const d = this.desiredMeta;
      if (!s.synced && s.lastCompleteRev > d.revision && s.storeId === d.storeId) {
        this.desiredMeta = { revision: s.lastCompleteRev, storeId: s.storeId };
      }
      this.setConsistent(true);
      this.requestReconcile();
    });
  }

  // ------------------------------------------------------ agent-local rules

  /**
   * Replaces one owner's agent-local rules (the failsafe entries, or the
   * responder's local bans; reconcile/local-rules.ts): `compute` gets that
   * owner's current ones and returns the wanted set, in the queue like every
   * other change; the difference is reconciled (nothing when equal).
   */
  replaceLocalRules(compute: (current: readonly RuleSpec[]) => readonly RuleSpec[], owner: LocalRuleOwner = 'failsafe'): Promise<void> {
    return this.run(() => {
      const t = this.table;
      const current = t.localRules().filter((r) => localOwnerOf(r.id) === owner);
      const want = compute(current);
      for (const r of want) {
        if (localOwnerOf(r.id) !== owner) throw new RangeError(`rule id ${r.id} is not in the ${owner} range of agent-local ids`);
      }
      const ids = new Set(want.map((r) => r.id));
      for (const r of current) if (!ids.has(r.id)) t.removeLocal(r.id);
      for (const r of want) t.upsertLocal(r);
      this.requestReconcile();
    });
  }

  /** The desired agent-local rules (diagnostics, tests). */
  localRules(): RuleSpec[] {
    return this.table.localRules();
  }

  private state(stream: SyncStream): StreamState {
    if (!(stream instanceof StreamState)) throw new TypeError('not a stream opened by this engine');
    return stream;
  }

  private applyRules(rules: RawRules): void {
    const res = applyRawRules(this.table, rules, this.now());
    if (res.invalid > 0) this.log.warn({ invalid: res.invalid }, 'rules the agent cannot apply arrived (they will be NACKed)');
  }

  /** Marks the desired set half-way (reconciles wait) or whole again. */
  private setConsistent(v: boolean): void {
    this.consistentFlag = v;
    if (v && this.reconcileWanted) this.kick();
  }

  /** The desired set now corresponds to `meta`; reconcile (and notify even if nothing changed). */
  private setDesired(meta: SyncMeta): void {
    this.desiredMeta = meta;
    this.consistentFlag = true;
    this.requestReconcile(true);
  }

  // ----------------------------------------------------------- the queue

  /**
   * Runs `task` after every queued task; resolves when it ran. A task that
   * throws is logged and recorded as the last error, never left unhandled:
   * the agent keeps enforcing what it has.
   */
  private run(task: Task): Promise<void> {
    return new Promise((resolve) => {
      this.queue.push(async () => {
        try {
          await task();
        } catch (e) {
          this.lastErrorValue = `internal error: ${(e as Error).message}`;
          this.lastErrorAtValue = this.now();
          this.log.error({ err: e }, 'a state change failed; the kernel keeps its current state');
        } finally {
          // Rules that arrived with an expiry earlier than the timer's.
          this.armExpiry();
        }
        resolve();
      });
      this.kick();
    });
  }

  /** Asks for a reconcile once the queue is empty and the desired set is whole. */
  requestReconcile(notify = false): void {
    this.reconcileWanted = true;
    if (notify) this.forceNotify = true;
    this.kick();
  }

  /** Resolves when no task is queued and no reconcile is wanted or running. */
  idle(): Promise<void> {
    if (!this.draining && this.queue.length === 0 && !(this.reconcileWanted && this.consistentFlag)) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private kick(): void {
    if (this.draining || this.stopped) return;
    this.draining = true;
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    try {
      for (;;) {
        if (this.stopped) break;
        // A wanted reconcile runs right after the task that asked for it, so
        // every revision is applied (ACK) or refused (NACK) on its own.
        if (this.reconcileWanted && this.consistentFlag) {
          this.reconcileWanted = false;
          await this.reconcileNow();
          continue;
        }
        const task = this.queue.shift();
        if (!task) break;
        this.stats.tasks++;
        await task();
      }
    } finally {
      this.draining = false;
      if (this.queue.length === 0 && !(this.reconcileWanted && this.consistentFlag)) {
        const w = this.idleWaiters;
        this.idleWaiters = [];
        for (const f of w) f();
      } else if (!this.stopped) this.kick();
    }
  }

  private async reconcileNow(): Promise<void> {
    const target = this.desiredMeta;
    const notify = this.forceNotify;
    this.forceNotify = false;
    const metaChanged = target.revision !== this.appliedMeta.revision || target.storeId !== this.appliedMeta.storeId;
    if (!this.table.dirty.pending && !metaChanged && !this.lastRefusalValue) {
      if (notify) for (const l of this.listeners) l.applied(target, { ok: true, opCount: 0, ms: 0, full: false });
      return;
    }
    const res = await this.rec.reconcile(metaChanged ? target : undefined);
    if (res.ok) {
      this.appliedMeta = target;
      this.lastRefusalValue = undefined;
      if (this.lastErrorValue !== '') this.log.info({ revision: String(target.revision) }, 'applied; the earlier error is resolved');
      this.lastErrorValue = '';
      for (const l of this.listeners) l.applied(target, res);
    } else {
      this.lastRefusalValue = res;
      this.lastErrorValue = res.message;
      this.lastErrorAtValue = this.now();
      this.log.warn({ revision: String(target.revision), reason: res.reason, code: res.code }, `refused: ${res.message}`);
      for (const l of this.listeners) l.refused(target, res);
    }
  }

  // ------------------------------------------------------------------ expiry

  /** Brings the expiry timer forward if a rule arrived that expires before it. */
  private armExpiry(): void {
    if (this.expiry.takeEarliestPush() < this.expiryAt) this.scheduleExpiry();
  }

  private scheduleExpiry(): void {
    if (this.stopped) return;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const next = this.expiry.next;
    this.expiryAt = next;
    if (next === Infinity) return;
    const delay = Math.max(0, Math.min(MAX_TIMER_MS, next - this.now()));
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.expiryAt = Infinity;
      void this.run(() => {
        const n = this.expiry.expire(this.now(), this.table);
        if (n > 0) {
          this.stats.expired += n;
          this.log.info({ rules: n }, 'rules expired locally');
          this.requestReconcile();
        }
        this.scheduleExpiry();
      });
    }, delay + 1);
  }

  stop(): void {
    this.stopped = true;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
  }
}
