// The Sync client: one bidirectional stream to the control plane at a time.
//
//   hello(resume_revision, store_id from the pinned meta)
//   -> SyncStart: SNAPSHOT (chunks, then apply) or RESUME (deltas, InSync, apply)
//   -> ACK a revision once the datapath applied it, NACK with a google.rpc.Status
//      when the kernel cannot take it (the kernel keeps its last good state)
//   -> deltas (parts folded until more=false), pings both ways, counter
//      reports every interval, AgentStatus on change.
//
// The client speaks the protocol; the engine owns the state: each message
// that changes the desired set is handed to the engine as an intent (begin
// stream, snapshot chunk, delta, in sync, stream lost) with the stream's
// token, and the engine's results (applied, refused) become ACK and NACK.
//
// Credentials: TLS with the node's client certificate when it has one
// (identity/node-identity.ts), plaintext otherwise. A renewed certificate
// takes a new channel (grpc-js fixes credentials at channel creation):
// switchCredentials() opens one, and at a safe point (in sync, no revision
// half received) moves the stream over to it, resuming from the applied
// revision; the kernel enforces throughout.
//
// Fail static: when the stream fails or the peer goes silent for three ping
// intervals, the kernel keeps enforcing (nothing is flushed), local expiry
// keeps running, and the client reconnects with exponential backoff and full
// jitter, rotating through the configured control planes.

import { randomUUID } from 'node:crypto';
import { type ChannelCredentials, type ChannelOptions, credentials, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  type SyncRequest,
  type SyncStart,
  type AgentStatus,
  type AgentEventBatch,
  SyncMode,
} from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { InterfaceStatus } from '../../../proto/gen/fleetwall/v1/node.js';
import type { SyncMeta } from '../datapath/datapath.js';
import type { CounterReporter } from '../counters/counter-reporter.js';
import type { Engine, SyncStream } from '../engine.js';
import type { ReconcileFailed } from '../reconcile/reconciler.js';
import { Backoff } from './backoff.js';
import { AgentSyncClient, type AgentSyncResponse, type RawDelta, type RawSnapshotChunk } from './sync-codec.js';
import { statusOf } from './wire.js';

/** A grpc-js channel, as a client's getChannel() returns it (what channelOverride takes). */
export type GrpcChannel = ReturnType<AgentSyncClient['getChannel']>;

export type SyncStateName = 'connecting' | 'syncing' | 'in_sync' | 'degraded' | 'disconnected' | 'stopped';

export interface SyncClientOptions {
  readonly controlPlanes: readonly string[];
  readonly nodeName: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly agentVersion: string;
  readonly pingIntervalMs: number;
  readonly counterIntervalMs: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  readonly capacityPerTable: number;
  /** TLS credentials (and channel options) for each new channel; unset: plaintext. */
  readonly connection?: () => { readonly credentials: ChannelCredentials; readonly options: ChannelOptions };
}

/** Where the stream's AgentEventBatch messages come from (the agent's event pump). */
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

interface Session {
  readonly id: number;
  readonly call: ClientDuplexStream<SyncRequest, AgentSyncResponse>;
  readonly client: AgentSyncClient;
  readonly address: string;
  /** The engine's token for this stream (its store id, whether it is synced). */
  readonly stream: SyncStream;
  started: boolean;
  ended: boolean;
  ackedRev: bigint;
  nackedRev: bigint;
  pingMs: number;
  lastRecv: number;
  pingTimer: NodeJS.Timeout | undefined;
  counterTimer: NodeJS.Timeout | undefined;
  eventTimer: NodeJS.Timeout | undefined;
  nonce: bigint;
  lastStatusKey: string;
  /** performance.now() when Hello was written. */
  helloAt: number;
  /** A revision arrived in part (Delta.more): not a point to switch streams at. */
  partial: boolean;
}

export class SyncClient {
  /** Sampled drop events to send on each live stream (set by the agent before start()). */
  events: EventBatchSource | null = null;
  private session: Session | undefined;
  private sessionSeq = 0;
  private readonly backoff: Backoff;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private addrIndex = 0;
  private stateValue: SyncStateName = 'disconnected';
  private stopped = false;
  readonly instanceId = randomUUID();
  readonly stats = {
    connects: 0,
    streamsStarted: 0,
    snapshots: 0,
    resumes: 0,
    acks: 0,
    nacks: 0,
    deltas: 0,
    lastSyncMode: '' as '' | 'snapshot' | 'resume',
    lastDisconnectReason: '',
    controlPlane: '',
    controlPlaneId: '',
    /** ms from a delta's commit_time to its ACK, last value. */
    lastPropagationMs: -1,
    /** ms from Hello to the first ACK of the last stream. */
    lastSyncMs: -1,
    /** Streams moved to a new channel with renewed credentials. */
    credentialSwitches: 0,
  };
  /** Renewed credentials wait for a safe point to take over the stream. */
  private switchPending = false;
  private switching = false;
  /** Delta commit times waiting for their ACK (revision -> Unix ms). */
  private readonly commitTimes = new Map<bigint, number>();
  onPropagation: ((ms: number) => void) | undefined;
  /** Called as each connection attempt starts (the agent re-resolves its failsafe entries). */
  onConnecting: ((address: string) => void) | undefined;

  constructor(
    private readonly opts: SyncClientOptions,
    private readonly engine: Engine,
    private readonly counters: CounterReporter,
    private readonly status: StatusSource,
    private readonly log: Logger,
  ) {
    this.backoff = new Backoff(opts.reconnectMinMs, opts.reconnectMaxMs);
    engine.addListener({
      applied: (meta) => this.onApplied(meta),
      refused: (meta, res) => this.onRefused(meta, res),
    });
  }

  get state(): SyncStateName {
    return this.stateValue;
  }

  get connected(): boolean {
    return this.session?.started === true && !this.session.ended;
  }

  start(): void {
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stateValue = 'stopped';
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const s = this.session;
    if (s && !s.ended) {
      this.endSession(s, 'agent stopping');
      try {
        s.call.end();
      } catch {
        /* already closed */
      }
      s.call.cancel();
    }
  }

  // ------------------------------------------------------------- connection

  /** A channel to `address` with the current credentials. */
  private newClient(address: string): AgentSyncClient {
    const conn = this.opts.connection?.();
    return new AgentSyncClient(address, conn?.credentials ?? credentials.createInsecure(), {
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': this.opts.reconnectMinMs,
      'grpc.max_reconnect_backoff_ms': this.opts.reconnectMaxMs,
      ...conn?.options,
    });
  }

  /** The live stream's channel (certificate renewal goes over it). */
  currentChannel(): { address: string; channel: GrpcChannel } | undefined {
    const s = this.session;
    return s?.started && !s.ended ? { address: s.address, channel: s.client.getChannel() } : undefined;
  }

  /**
   * New credentials (a renewed certificate): the next channel uses them. A
   * live stream moves over at a safe point: a new channel is connected
   * first; only once its TLS handshake succeeded is the old stream ended and
   * a new one opened on it, resuming from the applied revision.
   */
  switchCredentials(): void {
    this.switchPending = true;
    this.trySwitch();
  }

  private trySwitch(): void {
    const s = this.session;
    if (!this.switchPending || this.switching || this.stopped) return;
    if (!s || s.ended) {
      this.switchPending = false; // the next connect uses the new credentials anyway
      return;
    }
    if (!s.started || !s.stream.synced || s.partial) return; // tried again after the next revision
    this.switching = true;
    const next = this.newClient(s.address);
    next.waitForReady(Date.now() + 10_000, (err) => {
      this.switching = false;
      if (err || this.session !== s || s.ended || this.stopped || !s.stream.synced || s.partial) {
        next.close();
        if (err) {
          this.log.warn({ err: err.message }, 'the renewed certificate could not connect yet; keeping the current stream');
          setTimeout(() => this.trySwitch(), this.opts.reconnectMaxMs).unref();
        } else this.trySwitch();
        return;
      }
      this.switchPending = false;
      this.stats.credentialSwitches++;
      this.endSession(s, 'moving the stream to the renewed certificate', { address: s.address, client: next });
    });
  }

  private connect(prepared?: { address: string; client: AgentSyncClient }): void {
    if (this.stopped) {
      prepared?.client.close();
      return;
    }
    const address = prepared?.address ?? this.opts.controlPlanes[this.addrIndex % this.opts.controlPlanes.length]!;
    this.onConnecting?.(address);
    this.stateValue = 'connecting';
    this.stats.connects++;
    this.stats.controlPlane = address;
    const client = prepared?.client ?? this.newClient(address);
    const call = client.sync();
    const s: Session = {
      id: ++this.sessionSeq,
      call,
      client,
      address,
      stream: this.engine.openStream(),
      started: false,
      ended: false,
      ackedRev: -1n,
      nackedRev: -1n,
      pingMs: this.opts.pingIntervalMs,
      lastRecv: Date.now(),
      pingTimer: undefined,
      counterTimer: undefined,
      eventTimer: undefined,
      nonce: 0n,
      lastStatusKey: '',
      helloAt: 0,
      partial: false,
    };
    this.session = s;
    call.on('data', (m: AgentSyncResponse) => this.onMessage(s, m));
    call.on('error', (e: ServiceError) => this.endSession(s, `${e.code !== undefined ? `code ${e.code}: ` : ''}${e.details || e.message}`));
    call.on('end', () => this.endSession(s, 'stream ended by the control plane'));
    const meta = this.engine.applied;
    this.log.debug({ address, resumeRevision: String(meta.revision), storeId: meta.storeId }, 'connecting');
    s.helloAt = performance.now();
    this.write(s, {
      msg: {
        $case: 'hello',
        value: {
          nodeName: this.opts.nodeName,
          labels: { ...this.opts.labels },
          agentVersion: this.opts.agentVersion,
          interfaces: this.status.interfaces(),
          resumeRevision: meta.revision,
          storeId: meta.storeId,
          agentInstanceId: this.instanceId,
          capacityPerTable: BigInt(this.opts.capacityPerTable),
        },
      },
    });
    this.armPing(s);
  }

  /** Ends a stream; reconnects after a backoff, or at once on `switchTo` (a new channel, already connected). */
  private endSession(s: Session, reason: string, switchTo?: { address: string; client: AgentSyncClient }): void {
    if (s.ended) return;
    s.ended = true;
    if (s.pingTimer) clearInterval(s.pingTimer);
    if (s.counterTimer) clearInterval(s.counterTimer);
    if (s.eventTimer) clearInterval(s.eventTimer);
    try {
      s.call.cancel();
    } catch {
      /* ignore */
    }
    s.client.close();
    this.stats.lastDisconnectReason = reason;
    if (this.session === s) this.session = undefined;
    // Whatever arrived stays desired (see Engine.streamLost).
    this.engine.streamLost(s.stream);
    if (this.stopped) {
      switchTo?.client.close();
      return;
    }
    if (switchTo) {
      this.log.info({ reason, address: switchTo.address }, 'switching the Sync stream to a new channel');
      this.connect(switchTo);
      return;
    }
    this.stateValue = 'disconnected';
    if (s.started)
      this.log.warn({ reason, address: s.address }, 'lost the control plane; enforcing the last applied policy and reconnecting');
    else this.log.debug({ reason, address: s.address }, 'control plane unreachable');
    this.addrIndex++;
    const delay = this.backoff.next();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delay);
  }

  private write(s: Session, m: SyncRequest): void {
    if (s.ended) return;
    try {
      s.call.write(m);
    } catch (e) {
      this.endSession(s, `write failed: ${(e as Error).message}`);
    }
  }

  private armPing(s: Session): void {
    if (s.pingTimer) clearInterval(s.pingTimer);
    s.pingTimer = setInterval(() => {
      if (s.ended) return;
      if (Date.now() - s.lastRecv > 3 * s.pingMs) {
        this.log.warn({ silentMs: Date.now() - s.lastRecv }, 'control plane silent for 3 ping intervals: reconnecting');
        this.endSession(s, 'peer silent for 3 ping intervals');
        return;
      }
      this.write(s, { msg: { $case: 'ping', value: { nonce: ++s.nonce, sendTime: new Date() } } });
    }, s.pingMs);
  }

  // --------------------------------------------------------------- messages

  private onMessage(s: Session, m: AgentSyncResponse): void {
    if (s.ended || !m.msg) return;
    s.lastRecv = Date.now();
    switch (m.msg.$case) {
      case 'start':
        this.onStart(s, m.msg.value);
        return;
      case 'snapshotChunk':
        this.onChunk(s, m.msg.value);
        return;
      case 'delta':
        this.onDelta(s, m.msg.value);
        return;
      case 'inSync':
        this.engine.inSync(s.stream, m.msg.value.revision);
        this.trySwitch();
        return;
      case 'ping':
        this.write(s, { msg: { $case: 'pong', value: { nonce: m.msg.value.nonce } } });
        return;
      case 'pong':
        return;
      case 'counterAck':
        this.counters.onAck(m.msg.value.seq);
        return;
    }
  }

  private onStart(s: Session, st: SyncStart): void {
    s.started = true;
    this.stats.controlPlaneId = st.controlPlaneId;
    this.stats.streamsStarted++;
    this.backoff.reset();
    this.stateValue = 'syncing';
    const pingMs = st.pingInterval ? Number(st.pingInterval.seconds) * 1000 + Math.floor(st.pingInterval.nanos / 1e6) : 0;
    if (pingMs >= 100 && pingMs !== s.pingMs) {
      s.pingMs = pingMs;
      this.armPing(s);
    }
    const snapshot = st.mode === SyncMode.SYNC_MODE_SNAPSHOT;
    if (snapshot) this.stats.snapshots++;
    else this.stats.resumes++;
    this.stats.lastSyncMode = snapshot ? 'snapshot' : 'resume';
    this.log.info(
      {
        mode: snapshot ? 'snapshot' : 'resume',
        revision: String(st.revision),
        from: String(this.engine.applied.revision),
        storeId: st.storeId,
        controlPlaneId: st.controlPlaneId,
      },
      'sync started',
    );
    this.engine.beginStream(s.stream, snapshot ? 'snapshot' : 'resume', st.storeId);
    this.counters.newStream();
    s.counterTimer = setInterval(() => this.sendCounters(s), this.opts.counterIntervalMs);
    const ev = this.events;
    if (ev) s.eventTimer = setInterval(() => this.sendEvents(s, ev), ev.intervalMs);
    this.sendStatus(s);
  }

  /** Sampled drop events, a few batches per tick; none while the stream is backed up (the queue drops the oldest). */
  private sendEvents(s: Session, ev: EventBatchSource): void {
    for (let i = 0; i < MAX_EVENT_BATCHES_PER_TICK && !s.ended && !s.call.writableNeedDrain; i++) {
      let batch: AgentEventBatch | null;
      try {
        batch = ev.take();
      } catch (e) {
        this.log.error({ err: e }, 'reading drop events failed');
        return;
      }
      if (!batch) return;
      this.write(s, { msg: { $case: 'events', value: batch } });
    }
  }

  private onChunk(s: Session, c: RawSnapshotChunk): void {
    this.engine.snapshotChunk(s.stream, c);
  }

  private onDelta(s: Session, d: RawDelta): void {
    this.stats.deltas++;
    // Propagation delay: live deltas only (a catch-up replays old commits).
    if (d.commitTime && !d.more && s.stream.synced) this.commitTimes.set(d.revision, d.commitTime.getTime());
    s.partial = d.more;
    this.engine.delta(s.stream, d);
    if (!d.more) this.trySwitch();
  }

  // ----------------------------------------------------- results and reports

  private onApplied(meta: SyncMeta): void {
    const s = this.session;
    if (!s || s.ended || !s.stream.synced || meta.storeId !== s.stream.storeId) return;
    if (meta.revision > s.ackedRev) {
      const first = s.ackedRev < 0n;
      this.write(s, { msg: { $case: 'ack', value: { revision: meta.revision } } });
      if (first) {
        const ms = Math.round(performance.now() - s.helloAt);
        this.stats.lastSyncMs = ms;
        this.log.info(
          { mode: this.stats.lastSyncMode, revision: String(meta.revision), rules: s.stream.snapshotRules, helloToAckMs: ms },
          'in sync: first ACK of the stream',
        );
      }
      s.ackedRev = meta.revision;
      this.stats.acks++;
      const ct = this.commitTimes.get(meta.revision);
      if (ct !== undefined) {
        const ms = Date.now() - ct;
        this.stats.lastPropagationMs = ms;
        this.onPropagation?.(ms);
      }
      for (const k of this.commitTimes.keys()) if (k <= meta.revision) this.commitTimes.delete(k);
    }
    this.stateValue = 'in_sync';
    this.sendStatus(s);
  }

  private onRefused(meta: SyncMeta, res: ReconcileFailed): void {
    const s = this.session;
    this.stateValue = s?.started && !s.ended ? 'degraded' : this.stateValue;
    if (!s || s.ended || !s.stream.synced || meta.storeId !== s.stream.storeId) return;
    if (meta.revision > s.ackedRev && meta.revision !== s.nackedRev) {
      this.write(s, {
        msg: { $case: 'nack', value: { revision: meta.revision, status: statusOf(res.code, res.reason, res.message, res.metadata) } },
      });
      s.nackedRev = meta.revision;
      this.stats.nacks++;
    }
    this.sendStatus(s);
  }

  private sendCounters(s: Session): void {
    if (s.ended || !s.started) return;
    try {
      for (const report of this.counters.collect()) this.write(s, { msg: { $case: 'counterReport', value: report } });
    } catch (e) {
      this.log.error({ err: e }, 'reading counters failed');
    }
    this.sendStatus(s);
  }

  /** AgentStatus when something in it changed. */
  sendStatus(s: Session | undefined = this.session): void {
    if (!s || s.ended || !s.started) return;
    const st = this.status.agentStatus();
    const key = JSON.stringify(st, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
    if (key === s.lastStatusKey) return;
    s.lastStatusKey = key;
    this.write(s, { msg: { $case: 'status', value: st } });
  }
}
