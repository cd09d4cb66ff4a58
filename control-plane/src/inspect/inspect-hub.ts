// Where drop events arrive in a control-plane process: batches from its
// agents' Sync streams (stored, counted per node, fanned out to the other
// processes) and events fanned in from those (stored). Watchers and top
// sources read the history.

import { Counter, type Registry } from 'prom-client';
import type { AgentEventBatch } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { EventFanout } from './event-fanout.js';
import { EventHistory } from './event-history.js';
import { type InspectEvent, fromAgent } from './inspect-event.js';

export interface InspectHubOptions {
  /** Events kept at most. */
  readonly historySize: number;
  /** And for at most this long (ms): the longest TopSources window and `since`. */
  readonly historyMs: number;
}

export class InspectHub {
  readonly history: EventHistory;
  private fanout: EventFanout | null = null;
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

  /** Events another process received. */
  fanIn(events: InspectEvent[]): void {
    this.history.append(events);
  }
}
