// The agent's single writer: every change to the rule state (snapshot
// chunks, deltas, local expiry, stream loss) runs as a task in one queue, and
// reconciles run between tasks, so a plan never sees the state move under it.
// Each revision is reconciled on its own (ACK or NACK per revision); a
// resume catch-up is applied once, at InSync.
//
// It tracks two revisions: `applied` (what the kernel and the pinned meta
// hold) and `desired` (the revision the desired set corresponds to). The
// desired set is "consistent" except in the middle of a snapshot, of a
// revision split into parts, or of a resume catch-up; reconciles wait for it.

import type { Logger } from 'pino';
import type { SyncMeta } from './datapath/datapath.js';
import { ExpiryQueue } from './expiry/expiry-queue.js';
import type { ReconcileFailed, Reconciler, ReconcileOk } from './reconcile/reconciler.js';

export interface EngineListener {
  /** The kernel holds `meta` (after an apply, or at once if nothing was pending). */
  applied(meta: SyncMeta, result: ReconcileOk): void;
  /** The kernel could not take the desired set of `meta`; it keeps `applied`. */
  refused(meta: SyncMeta, result: ReconcileFailed): void;
}

type Task = () => void | Promise<void>;

/** Longest a timer waits before re-checking the clock. */
const MAX_TIMER_MS = 60_000;

export class Engine {
  readonly expiry: ExpiryQueue;
  applied: SyncMeta;
  desired: SyncMeta;
  /** False while the desired set is half-way through a snapshot, parts or catch-up. */
  private consistentFlag = true;
  lastError = '';
  lastErrorAt = 0;
  /** Last refusal, until a later apply succeeds. */
  lastRefusal: ReconcileFailed | undefined;
  private readonly queue: Task[] = [];
  private draining = false;
  private reconcileWanted = false;
  private forceNotify = false;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiryAt = Infinity;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  readonly listeners: EngineListener[] = [];
  readonly stats = { expired: 0, tasks: 0 };

  constructor(
    readonly rec: Reconciler,
    private readonly log: Logger,
    initialMeta: SyncMeta,
    private readonly now: () => number = Date.now,
  ) {
    this.applied = initialMeta;
    this.desired = initialMeta;
    this.expiry = new ExpiryQueue(rec.table);
    rec.table.onExpiry = (r, at) => {
      this.expiry.push(r, at);
      if (at < this.expiryAt) this.scheduleExpiry();
    };
  }

  get consistent(): boolean {
    return this.consistentFlag;
  }

  /** Marks the desired set half-way (reconciles wait) or whole again. */
  setConsistent(v: boolean): void {
    this.consistentFlag = v;
    if (v && this.reconcileWanted) this.kick();
  }

  /** The desired set now corresponds to `meta`; reconcile (and notify even if nothing changed). */
  setDesired(meta: SyncMeta): void {
    this.desired = meta;
    this.consistentFlag = true;
    this.requestReconcile(true);
  }

  /**
   * Runs `task` after every queued task; resolves when it ran. A task that
   * throws is logged and recorded as the last error, never left unhandled:
   * the agent keeps enforcing what it has.
   */
  run(task: Task): Promise<void> {
    return new Promise((resolve) => {
      this.queue.push(async () => {
        try {
          await task();
        } catch (e) {
          this.lastError = `internal error: ${(e as Error).message}`;
          this.lastErrorAt = this.now();
          this.log.error({ err: e }, 'a state change failed; the kernel keeps its current state');
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
    const target = this.desired;
    const t = this.rec.table;
    const notify = this.forceNotify;
    this.forceNotify = false;
    const metaChanged = target.revision !== this.applied.revision || target.storeId !== this.applied.storeId;
    if (!t.hasPending && !metaChanged && !this.lastRefusal) {
      if (notify) for (const l of this.listeners) l.applied(target, { ok: true, opCount: 0, ms: 0, full: false });
      return;
    }
    const res = await this.rec.reconcile(metaChanged ? target : undefined);
    if (res.ok) {
      this.applied = target;
      this.lastRefusal = undefined;
      if (this.lastError !== '') this.log.info({ revision: String(target.revision) }, 'applied; the earlier error is resolved');
      this.lastError = '';
      for (const l of this.listeners) l.applied(target, res);
    } else {
      this.lastRefusal = res;
      this.lastError = res.message;
      this.lastErrorAt = this.now();
      this.log.warn({ revision: String(target.revision), reason: res.reason, code: res.code }, `refused: ${res.message}`);
      for (const l of this.listeners) l.refused(target, res);
    }
  }

  // ------------------------------------------------------------------ expiry

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
        const n = this.expiry.expire(this.now());
        if (n > 0) {
          this.stats.expired += n;
          this.log.info({ rules: n }, 'rules expired locally');
          this.requestReconcile();
        }
        this.scheduleExpiry();
      });
    }, delay + 1);
  }

  /** Starts the expiry timer (after the pinned state was loaded). */
  startExpiry(): void {
    this.scheduleExpiry();
  }

  stop(): void {
    this.stopped = true;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
  }
}
