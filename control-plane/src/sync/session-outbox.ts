// What goes out on one agent's Sync stream (agent-session.ts): an outbox of
// references to the shared, pre-encoded buffers, handed to grpc-js (which
// copies them into HTTP/2 frames) only while less than OUT_HIGH_WATER bytes
// are in flight, so a stream that never reads holds about that much of its
// own, not a copy of every snapshot. The session decides when a stream is too
// slow (the bytes waiting, the age of the oldest); the outbox counts them.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { SyncRequest, SyncResponse } from '../../../proto/gen/fleetwall/v1/agent_service.js';

export type SyncCall = ServerDuplexStream<SyncRequest, SyncResponse | Buffer>;

/** Bytes handed to grpc-js and not yet written to the socket, per stream, before the outbox holds the rest. */
const OUT_HIGH_WATER = 1024 * 1024;
/** What a small control message (SyncStart, ping, pong, counter ack) is counted as. */
const SMALL_MESSAGE_BYTES = 64;

interface Outgoing {
  readonly msg: SyncResponse | Buffer;
  readonly bytes: number;
  /** Epoch ms it was queued. */
  readonly at: number;
}

export class SessionOutbox {
  /**
   * grpc-js's call under the Duplex: messages sent straight to it skip the
   * object-mode stream machinery (two nextTicks and a buffer per message),
   * the largest JS cost of writing one delta to 1,000 streams. Status and
   * end still go through the Duplex, after these messages (grpc-js ends the
   * HTTP/2 stream, then sends trailers). Falls back to call.write().
   */
  private readonly direct: { sendMessage(m: unknown, cb: () => void): void } | undefined;
  /** Not yet handed to grpc-js (from outHead on). */
  private readonly outbox: Outgoing[] = [];
  private outHead = 0;
  private outboxBytes = 0;
  /** Handed to grpc-js, not yet written (in order: callbacks come in order). */
  private readonly inflight: Outgoing[] = [];
  private inflightBytes = 0;
  private closed = false;
  /**
   * A tick found messages still waiting for this agent (its pings among them,
   * behind a snapshot or a large delta it is still receiving); when they have
   * all reached the socket, `backlogClearedAt` is set and the silence clock
   * counts from then: an agent cannot answer a ping it has not received.
   */
  private backlogSeen = false;
  private clearedAt = 0;

  constructor(private readonly call: SyncCall) {
    const inner = (call as unknown as { call?: { sendMessage?: unknown } }).call;
    this.direct = typeof inner?.sendMessage === 'function' ? (inner as { sendMessage(m: unknown, cb: () => void): void }) : undefined;
  }

  /** Sends `msg` now, or queues it behind what waits; returns the bytes waiting for the agent (queued and in flight). */
  push(msg: SyncResponse | Buffer): number {
    const o: Outgoing = { msg, bytes: Buffer.isBuffer(msg) ? msg.length : SMALL_MESSAGE_BYTES, at: Date.now() };
    if (this.outHead === this.outbox.length && this.inflightBytes < OUT_HIGH_WATER) this.send(o);
    else {
      this.outbox.push(o);
      this.outboxBytes += o.bytes;
    }
    return this.outboxBytes + this.inflightBytes;
  }

  private send(o: Outgoing): void {
    this.inflight.push(o);
    this.inflightBytes += o.bytes;
    if (this.direct) this.direct.sendMessage(o.msg, this.onSent);
    else this.call.write(o.msg, this.onSent);
  }

  private readonly onSent = (): void => {
    const o = this.inflight.shift();
    if (o) this.inflightBytes -= o.bytes;
    while (this.outHead < this.outbox.length && this.inflightBytes < OUT_HIGH_WATER && !this.closed) {
      const next = this.outbox[this.outHead]!;
      this.outbox[this.outHead++] = undefined as unknown as Outgoing;
      this.outboxBytes -= next.bytes;
      this.send(next);
    }
    if (this.outHead === this.outbox.length) {
      this.outbox.length = 0;
      this.outHead = 0;
      if (this.backlogSeen && this.inflight.length === 0) {
        this.backlogSeen = false;
        this.clearedAt = Date.now();
      }
    } else if (this.outHead > 4096 && this.outHead * 2 > this.outbox.length) {
      this.outbox.splice(0, this.outHead);
      this.outHead = 0;
    }
  };

  /**
   * Epoch ms of the oldest message not yet written to the socket, or
   * undefined; one found marks a backlog (`backlogPending` until all of it
   * reached the socket).
   */
  checkBacklog(): number | undefined {
    const oldest = this.inflight[0]?.at ?? this.outbox[this.outHead]?.at;
    if (oldest !== undefined) this.backlogSeen = true;
    return oldest;
  }

  /** A backlog was seen and has not all reached the socket yet. */
  get backlogPending(): boolean {
    return this.backlogSeen;
  }

  /** Epoch ms when the last backlog seen had all reached the socket (0: never). */
  get backlogClearedAt(): number {
    return this.clearedAt;
  }

  /** The stream closed: what waits is dropped, nothing more is handed to grpc-js. */
  close(): void {
    this.closed = true;
    this.outbox.length = 0;
    this.outHead = 0;
    this.outboxBytes = 0;
  }
}
