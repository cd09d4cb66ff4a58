// What the agent reports on one Sync stream, once SyncStart arrived: counter
// reports every interval, AgentStatus on change, sampled drop events in
// batches, detections as the responder has them. One StreamReports per
// stream (sync-client.ts makes it with the stream and stops it when the
// stream ends); it writes through the stream's link and owns the timers.

import type { Logger } from 'pino';
import type { AgentEventBatch, AgentStatus, Detection, SyncRequest } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { InterfaceStatus } from '../../../proto/gen/fleetwall/v1/node.js';
import type { CounterReporter } from '../counters/counter-reporter.js';

/**
 * Where the stream's AgentEventBatch messages come from (the agent's event
 * pump). Batches go out as soon as events are read (eventsReady()), at most
 * one tick of intervalMs apart (batching only under load), and on every tick.
 */
export interface EventBatchSource {
  readonly intervalMs: number;
  /** The next batch, or null when there is nothing to send. */
  take(): AgentEventBatch | null;
}

/** Batches written per event tick at most (a backlog drains over a few ticks). */
const MAX_EVENT_BATCHES_PER_TICK = 4;

export interface StatusSource {
  interfaces(): InterfaceStatus[];
  agentStatus(): AgentStatus;
}

/** The stream the reports go out on. */
export interface ReportLink {
  /** SyncStart arrived and the stream has not ended. */
  live(): boolean;
  ended(): boolean;
  /** grpc-js's buffer is full (call.writableNeedDrain): events wait, the queue drops the oldest. */
  backedUp(): boolean;
  /** Writes one message (a failed write ends the stream). */
  write(m: SyncRequest): void;
}

export class StreamReports {
  private counterTimer: NodeJS.Timeout | undefined;
  private eventTimer: NodeJS.Timeout | undefined;
  /** A send of events due at lastEventsAt + intervalMs (eventsReady() inside an interval). */
  private eventKick: NodeJS.Timeout | undefined;
  /** performance.now() of the last events written. */
  private lastEventsAt = Number.NEGATIVE_INFINITY;
  private lastStatusKey = '';

  constructor(
    private readonly link: ReportLink,
    private readonly counters: Pick<CounterReporter, 'newStream' | 'collect'>,
    private readonly status: StatusSource,
    private readonly counterIntervalMs: number,
    private readonly log: Logger,
  ) {}

  /** SyncStart arrived: counters start over for the new stream, the timers run, the status goes out. */
  start(events: EventBatchSource | null): void {
    this.counters.newStream();
    this.counterTimer = setInterval(() => this.sendCounters(), this.counterIntervalMs);
    if (events) this.eventTimer = setInterval(() => this.sendEvents(events), events.intervalMs);
    this.sendStatus();
  }

  /** The stream ended: no more timers. */
  stop(): void {
    if (this.counterTimer) clearInterval(this.counterTimer);
    if (this.eventTimer) clearInterval(this.eventTimer);
    if (this.eventKick) clearTimeout(this.eventKick);
  }

  /**
   * Events were read: sent now if the last were sent an interval ago or more,
   * else when that interval ends (a flood goes out in batches, a lone event at once).
   */
  eventsReady(ev: EventBatchSource | null): void {
    if (this.link.ended() || !ev || !this.eventTimer || this.eventKick) return;
    const wait = this.lastEventsAt + ev.intervalMs - performance.now();
    if (wait <= 0) this.sendEvents(ev);
    else
      this.eventKick = setTimeout(() => {
        this.eventKick = undefined;
        this.sendEvents(ev);
      }, wait);
  }

  /** Sampled drop events, a few batches per tick; none while the stream is backed up (the queue drops the oldest). */
  private sendEvents(ev: EventBatchSource): void {
    for (let i = 0; i < MAX_EVENT_BATCHES_PER_TICK && !this.link.ended() && !this.link.backedUp(); i++) {
      let batch: AgentEventBatch | null;
      try {
        batch = ev.take();
      } catch (e) {
        this.log.error({ err: e }, 'reading drop events failed');
        return;
      }
      if (!batch) return;
      this.lastEventsAt = performance.now();
      this.link.write({ msg: { $case: 'events', value: batch } });
    }
  }

  private sendCounters(): void {
    if (!this.link.live()) return;
    try {
      for (const report of this.counters.collect()) this.link.write({ msg: { $case: 'counterReport', value: report } });
    } catch (e) {
      this.log.error({ err: e }, 'reading counters failed');
    }
    this.sendStatus();
  }

  /** Reports a detection; false when the stream is not live (the caller keeps it). */
  sendDetection(d: Detection): boolean {
    if (!this.link.live()) return false;
    this.link.write({ msg: { $case: 'detection', value: d } });
    return !this.link.ended();
  }

  /** AgentStatus when something in it changed. */
  sendStatus(): void {
    if (!this.link.live()) return;
    const st = this.status.agentStatus();
    const key = JSON.stringify(st, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
    if (key === this.lastStatusKey) return;
    this.lastStatusKey = key;
    this.link.write({ msg: { $case: 'status', value: st } });
  }
}
