// Where events arrive in a control-plane process: drop-event batches from
// its agents' Sync streams (stored, counted per node, fanned out to the
// other processes), the detections those agents report and the outcomes of
// the bans this process writes (respond/respond-setup.ts; stored, fanned
// out), and events fanned in from the other processes (stored). Watchers
// and top sources read the history.

import { Counter, type Registry } from 'prom-client';
import type { AgentEventBatch, Detection } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { EventFanout } from './event-fanout.js';
import { EventHistory } from './event-history.js';
import { type BanOutcomeEvent, type InspectEvent, fromAgent, fromBan, fromDetection } from './inspect-event.js';

export interface InspectHubOptions {
  /** Events kept at most. */
  readonly historySize: number;
  /** And for at most this long (ms): the longest TopSources window and `since`. */
  readonly historyMs: number;
}

/** Detections and ban outcomes wait at most this long to be fanned out together. */
const PUBLISH_MS = 20;

export class InspectHub {
  readonly history: EventHistory;
  private fanout: EventFanout | null = null;
  private unpublished: InspectEvent[] = [];
  private publishTimer: NodeJS.Timeout | undefined;
  private readonly received: Counter<'node'>;
  private readonly dropped: Counter<'node' | 'where'>;

  constructor(opts: InspectHubOptions, registry: Registry) {
    this.history = new EventHistory(opts.historySize, opts.historyMs);
    this.received = new Counter({
      name: 'fleetwall_events_received_total',
      help: 'Sampled drop events received from the agents connected to this process, per node.',
      labelNames: ['node'],
      registers: [registry],
    });
    this.dropped = new Counter({
      name: 'fleetwall_events_dropped_total',
      help: 'Sampled drop events a node could not send: its queue was full (agent_queue) or its kernel ring was (kernel).',
      labelNames: ['node', 'where'],
      registers: [registry],
    });
  }

  setFanout(f: EventFanout): void {
    this.fanout = f;
  }

  /** A batch from one of this process's agents. */
  ingest(node: string, b: AgentEventBatch): void {
    const events = b.events.map((e) => fromAgent(node, e));
    if (events.length > 0) {
      this.received.inc({ node }, events.length);
      this.history.append(events);
      this.fanout?.publish(events);
    }
    if (b.queueDropped > 0n) this.dropped.inc({ node, where: 'agent_queue' }, Number(b.queueDropped));
    let lost = 0n;
    for (const l of b.kernelLost) lost += l.lost;
    if (lost > 0n) this.dropped.inc({ node, where: 'kernel' }, Number(lost));
  }

  /** A detection one of this process's agents reported, for a policy this process knows. */
  detection(node: string, d: Detection, policy: string, direction: Direction): void {
    const e = fromDetection(node, d, policy, direction);
    if (e) this.local([e]);
  }

  /** What this process's ban writer did with a detection. */
  ban(b: BanOutcomeEvent): void {
    this.local([fromBan(b)]);
  }

  /**
   * Stored at once; fanned out in batches (at most every PUBLISH_MS): under an
   * attack detections and bans arrive one by one, and one NOTIFY each would
   * take a connection of the pool per event.
   */
  private local(events: InspectEvent[]): void {
    this.history.append(events);
    if (!this.fanout) return;
    this.unpublished.push(...events);
    if (this.publishTimer) return;
    this.publishTimer = setTimeout(() => {
      this.publishTimer = undefined;
      const batch = this.unpublished;
      this.unpublished = [];
      this.fanout?.publish(batch);
    }, PUBLISH_MS);
    this.publishTimer.unref();
  }

  /** Events another process received. */
  fanIn(events: InspectEvent[]): void {
    this.history.append(events);
  }
}
