// Moves sampled drop events from the kernel to the Sync stream: waits for
// the ring without a busy loop (poll(2) on a libuv worker, event-ring.ts),
// drains it into the bounded queue and says so (onEvents: the Sync client
// sends at once unless it sent less than an interval ago). Drains are at
// least `minIntervalMs` apart, the first after a quiet spell at once: a lone
// event goes out when it is read, a flood in batches (a wakeup per batch, not
// per event); take() hands the
// Sync client one AgentEventBatch at a time, with the queue's drops and the
// kernel's lost events per rule since the previous batch.

import type { Logger } from 'pino';
import type { AgentEventBatch } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { RuleEventLoss } from '../../../proto/gen/fleetwall/v1/event.js';
import type { EventBudgets, EventSource } from '../datapath/datapath.js';
import type { EventRing } from '../datapath/event-ring.js';
import { EventQueue, type EventResolver } from './event-queue.js';

export interface EventPumpOptions {
  /** Events the queue holds at most (oldest dropped first). */
  readonly queueSize: number;
  /** The least time between two drains of the ring (batching under load). */
  readonly minIntervalMs: number;
  /** Events per AgentEventBatch at most. */
  readonly batchSize: number;
  /** How long a wait for the ring lasts before it checks for stop (ms). */
  readonly waitMs?: number;
  /** Budgets read per chunk (the kernel's lost counts). */
  readonly lossChunk?: number;
  /** How often the kernel's lost counts are read (ms, default 1000: a read maps the budgets of every slot in use). */
  readonly lossEveryMs?: number;
}

const LOSS_CHUNK = 16384;

export class EventPump {
  readonly queue: EventQueue;
  private ring: EventRing | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly sink = (buf: Buffer, off: number, len: number) => this.queue.push(buf, off, len, this.resolver);
  /** Lost counts last seen per slot (u32 wrapping), and the budgets' map they came from. */
  private lastLost = new Uint32Array(0);
  /** The rule (id + 1, 0 = none) whose lost count lastLost holds, per slot: a slot given to another rule restarts at 0. */
  private lastOwner = new BigUint64Array(0);
  private lastDefaultLost = 0;
  private lastBudgetsId = -1;
  private lossReadAt = Number.NEGATIVE_INFINITY;
  /** performance.now() of the loop's last drain. */
  private lastDrainAt = Number.NEGATIVE_INFINITY;
  private readonly budgets: EventBudgets;
  /** Called after a drain that read events (the Sync client sends them). */
  onEvents: (() => void) | null = null;
  /** Totals since start (metrics). */
  readonly stats = { drains: 0, kernelLost: 0n, batches: 0, sent: 0 };

  constructor(
    private readonly src: EventSource,
    private readonly resolver: EventResolver,
    /** Slots in use (the counters' watermark): the lost counts are read up to it. */
    private readonly slotsInUse: () => number,
    private readonly opts: EventPumpOptions,
    private readonly log: Logger,
  ) {
    this.queue = new EventQueue(opts.queueSize, src.settings?.snapLen ?? 0);
    const chunk = opts.lossChunk ?? LOSS_CHUNK;
    this.budgets = { lost: new Uint32Array(chunk), pending: new Uint32Array(chunk), defaultLost: 0, defaultPending: 0 };
  }

  start(): void {
    if (this.running !== null) return;
    this.ring = this.src.openRing();
    this.running = this.loop();
  }

  private async loop(): Promise<void> {
    const ring = this.ring!;
    const waitMs = this.opts.waitMs ?? 250;
    while (!this.stopped) {
      let ready: boolean;
      try {
        ready = await ring.wait(waitMs);
      } catch (e) {
        this.log.error({ err: e }, 'waiting for drop events failed');
        await sleep(1000);
        continue;
      }
      if (this.stopped) break;
      if (!ready) continue;
      // Batching under load: a drain at most every minIntervalMs, the first after a quiet spell at once.
      for (;;) {
        const left = this.lastDrainAt + this.opts.minIntervalMs - performance.now();
        if (left <= 0 || this.stopped) break;
        await sleep(Math.min(left, waitMs));
      }
      if (this.stopped) break;
      this.lastDrainAt = performance.now();
      if (this.drainNow() > 0 || this.queue.length > 0) this.onEvents?.();
    }
  }

  /** Reads whatever the ring holds now into the queue. */
  drainNow(): number {
    if (!this.ring) return 0;
    this.stats.drains++;
    return this.ring.drain(this.sink);
  }

  /**
   * The next batch to send, or null when nothing is queued and nothing was
   * lost since the previous one. Reads the kernel's lost counts (deltas).
   */
  take(): AgentEventBatch | null {
    this.drainNow();
    const now = performance.now();
    let kernelLost: RuleEventLoss[] = [];
    if (now - this.lossReadAt >= (this.opts.lossEveryMs ?? 1000)) {
      this.lossReadAt = now;
      kernelLost = this.readLosses();
    }
    const { events, dropped } = this.queue.take(this.opts.batchSize, this.resolver);
    if (events.length === 0 && dropped === 0 && kernelLost.length === 0) return null;
    this.stats.batches++;
    this.stats.sent += events.length;
    return { events, queueDropped: BigInt(dropped), kernelLost };
  }

  /** Lost events per rule since the previous read (a new budgets map starts from 0). */
  private readLosses(): RuleEventLoss[] {
    const id = this.src.budgetsId;
    const upTo = this.slotsInUse();
    if (id !== this.lastBudgetsId) {
      // A new counters map: the rules' lost counts restart at 0 (the default's, in fw_ev_cpu, do not).
      this.lastBudgetsId = id;
      this.lastLost = new Uint32Array(upTo);
      this.lastOwner = new BigUint64Array(upTo);
    }
    if (this.lastLost.length < upTo) {
      const grown = new Uint32Array(upTo);
      grown.set(this.lastLost);
      this.lastLost = grown;
      const owners = new BigUint64Array(upTo);
      owners.set(this.lastOwner);
      this.lastOwner = owners;
    }
    const out: RuleEventLoss[] = [];
    const b = this.budgets;
    for (let first = 0; first < upTo; first += b.lost.length) {
      const n = this.src.readBudgets(first, b);
      for (let k = 0; k < n && first + k < upTo; k++) {
        const slot = first + k;
        let d = (b.lost[k]! - this.lastLost[slot]!) >>> 0;
        if (d === 0) continue;
        const rule = this.resolver.ruleOf(slot);
        const owner = rule === undefined ? 0n : BigInt.asUintN(64, rule + 1n);
        // Another rule than the one last read here: the slot was reset for it (counters and budget), its count starts at 0.
        if (owner !== this.lastOwner[slot]) d = b.lost[k]!;
        this.lastOwner[slot] = owner;
        this.lastLost[slot] = b.lost[k]!;
        if (rule !== undefined && d > 0) out.push({ ruleId: rule, lost: BigInt(d) });
      }
      if (n === 0) break;
    }
    if (upTo === 0) this.src.readBudgets(0, b);
    const dd = (b.defaultLost - this.lastDefaultLost) >>> 0;
    if (dd > 0) {
      this.lastDefaultLost = b.defaultLost;
      out.push({ ruleId: 0n, lost: BigInt(dd) });
    }
    for (const l of out) this.stats.kernelLost += l.lost;
    return out;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
    await this.ring?.close();
    this.ring = null;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
