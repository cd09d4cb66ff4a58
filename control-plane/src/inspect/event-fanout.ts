// Drop events across control-plane processes: each process NOTIFYs the
// events its own agents sent on one channel, in payloads under Postgres's
// 8000-byte limit (a WatchEventsResponse of DropEvents, base64, after this
// process's id); every process LISTENs and stores the others' events in its
// history. Nothing is written to a table: events are best effort and recent
// (each process keeps its own bounded history), so a process that was not
// listening misses them, as a watcher that connects later would.

import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import { parseAddress } from '../../../common/src/cidr.js';
import { WatchEventsResponse } from '../../../proto/gen/fleetwall/v1/inspect_service.js';
import type { DropEvent } from '../../../proto/gen/fleetwall/v1/event.js';
import { type InspectEvent, fromWire } from './inspect-event.js';

export const EVENTS_CHANNEL = 'fleetwall_events';
/** Payload bytes at most (Postgres refuses 8000 and more). */
const MAX_PAYLOAD = 7900;

function bytesOf(text: string): Uint8Array {
  if (text === '') return new Uint8Array(0);
  try {
    return parseAddress(text).bytes;
  } catch {
    return new Uint8Array(0);
  }
}

/** Splits events into base64 payloads of at most `max` characters (after the prefix). */
export function encodePayloads(prefix: string, events: readonly DropEvent[], max = MAX_PAYLOAD): string[] {
  const out: string[] = [];
  let cur: DropEvent[] = [];
  let bytes = 0;
  const room = Math.floor(((max - prefix.length) * 3) / 4) - 8;
  const flush = () => {
    if (cur.length === 0) return;
    out.push(prefix + Buffer.from(WatchEventsResponse.encode({ events: cur, missed: 0n }).finish()).toString('base64'));
    cur = [];
    bytes = 0;
  };
  for (const e of events) {
    const n = WatchEventsResponse.encode({ events: [e], missed: 0n }).finish().length;
    if (n > room) continue; // cannot happen with packet bytes <= 256; never split an event
    if (bytes + n > room) flush();
    cur.push(e);
    bytes += n;
  }
  flush();
  return out;
}

export function decodePayload(b64: string): InspectEvent[] {
  const m = WatchEventsResponse.decode(Buffer.from(b64, 'base64'));
  return m.events.map((w) => fromWire({ ...w, sequence: 0n }, bytesOf(w.source), bytesOf(w.destination)));
}

export class EventFanout {
  private unlisten: (() => Promise<void>) | undefined;
  private readonly prefix: string;
  /** Notifications sent and received, payload bytes sent (metrics, the bench). */
  readonly stats = { sent: 0, received: 0, bytesSent: 0, errors: 0 };

  constructor(
    private readonly sql: Sql,
    private readonly processId: string,
    private readonly onEvents: (events: InspectEvent[]) => void,
    private readonly log: Logger,
  ) {
    this.prefix = `${processId} `;
  }

  async start(): Promise<void> {
    const meta = await this.sql.listen(EVENTS_CHANNEL, (payload) => {
      const sp = payload.indexOf(' ');
      if (sp < 0 || payload.slice(0, sp) === this.processId) return;
      try {
        this.stats.received++;
        this.onEvents(decodePayload(payload.slice(sp + 1)));
      } catch (e) {
        this.stats.errors++;
        this.log.warn({ err: e }, 'could not decode drop events from another control plane');
      }
    });
    this.unlisten = meta.unlisten;
  }

  /** NOTIFYs events this process received from its agents (fire and forget; failures are logged). */
  publish(events: readonly InspectEvent[]): void {
    if (events.length === 0) return;
    for (const p of encodePayloads(
      this.prefix,
      events.map((e) => e.wire),
    )) {
      this.stats.sent++;
      this.stats.bytesSent += p.length;
      this.sql.notify(EVENTS_CHANNEL, p).catch((e: unknown) => {
        this.stats.errors++;
        this.log.warn({ err: e }, 'could not fan drop events out to the other control planes');
      });
    }
  }

  async stop(): Promise<void> {
    await this.unlisten?.().catch(() => undefined);
  }
}
