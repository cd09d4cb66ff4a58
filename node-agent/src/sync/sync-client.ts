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
// Credentials and channels: sync-channel.ts (switchCredentials() moves the
// stream to a new channel at a safe point). What goes out once the stream
// started (counters, status, drop events, detections): sync-reports.ts.
//
// Fail static: when the stream fails or the peer goes silent for three ping
// intervals, the kernel keeps enforcing (nothing is flushed), local expiry
// keeps running, and the client reconnects with exponential backoff and full
// jitter, rotating through the configured control planes.

import { randomUUID } from 'node:crypto';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { NODE_LABEL } from '../../../common/src/labels.js';
import {
  type AgentPolicy,
  type Detection,
  type SyncRequest,
  type SyncStart,
  SyncMode,
} from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { SyncMeta } from '../datapath/datapath.js';
import type { CounterReporter } from '../counters/counter-reporter.js';
import type { Engine, SyncStream } from '../engine.js';
import type { ReconcileFailed } from '../reconcile/reconciler.js';
import { Backoff } from './backoff.js';
import { type ConnectionSource, CredentialSwitch, type GrpcChannel, openSyncClient } from './sync-channel.js';
import type { AgentSyncClient, AgentSyncResponse, RawDelta, RawSnapshotChunk } from './sync-codec.js';
import { type EventBatchSource, type StatusSource, StreamReports } from './sync-reports.js';
import { helloOf, statusOf } from './wire.js';

/** The label every agent adds with its node name (BanScope NODE; common/src/labels.ts). */
export { NODE_LABEL };

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
  readonly connection?: ConnectionSource;
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
  /** Counters, status, drop events and detections on this stream. */
  readonly reports: StreamReports;
  nonce: bigint;
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
  private readonly credentialSwitch: CredentialSwitch<Session>;
  /** Delta commit times waiting for their ACK (revision -> Unix ms). */
  private readonly commitTimes = new Map<bigint, number>();
  onPropagation: ((ms: number) => void) | undefined;
  /** Called as each connection attempt starts (the agent re-resolves its failsafe entries). */
  onConnecting: ((address: string) => void) | undefined;
  /** The node's detection policies, whole, as each PolicySet arrives (node-agent/src/respond/). */
  onPolicies: ((policies: AgentPolicy[]) => void) | undefined;
  /** A stream reached InSync (the responder sends the detections that waited). */
  onLive: (() => void) | undefined;

  constructor(
    private readonly opts: SyncClientOptions,
    private readonly engine: Engine,
    private readonly counters: CounterReporter,
    private readonly status: StatusSource,
    private readonly log: Logger,
  ) {
    this.backoff = new Backoff(opts.reconnectMinMs, opts.reconnectMaxMs);
    this.credentialSwitch = new CredentialSwitch<Session>(
      {
        session: () => this.session,
        stopped: () => this.stopped,
        newClient: (address) => openSyncClient(address, opts),
        moveTo: (s, next) => {
          this.stats.credentialSwitches++;
          this.endSession(s, 'moving the stream to the renewed certificate', next);
        },
      },
      opts.reconnectMaxMs,
      log,
    );
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

  /** The live stream's channel (certificate renewal goes over it). */
  currentChannel(): { address: string; channel: GrpcChannel } | undefined {
    const s = this.session;
    return s?.started && !s.ended ? { address: s.address, channel: s.client.getChannel() } : undefined;
  }

  /** New credentials (a renewed certificate): the next channel uses them, a live stream moves over at a safe point. */
  switchCredentials(): void {
    this.credentialSwitch.request();
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
    const client = prepared?.client ?? openSyncClient(address, this.opts);
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
      reports: new StreamReports(
        {
          live: () => s.started && !s.ended,
          ended: () => s.ended,
          backedUp: () => s.call.writableNeedDrain,
          write: (m) => this.write(s, m),
        },
        this.counters,
        this.status,
        this.opts.counterIntervalMs,
        this.log,
      ),
      nonce: 0n,
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
    this.write(s, helloOf(this.opts, meta, this.status.interfaces(), this.instanceId));
    this.armPing(s);
  }

  /** Ends a stream; reconnects after a backoff, or at once on `switchTo` (a new channel, already connected). */
  private endSession(s: Session, reason: string, switchTo?: { address: string; client: AgentSyncClient }): void {
    if (s.ended) return;
    s.ended = true;
    if (s.pingTimer) clearInterval(s.pingTimer);
    s.reports.stop();
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
        this.credentialSwitch.trySwitch();
        this.onLive?.();
        return;
      case 'policies':
        this.onPolicies?.(m.msg.value.policies);
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
    s.reports.start(this.events);
  }

  /** Events were read: sent now, or when the interval since the last batch ends (sync-reports.ts). */
  eventsReady(): void {
    this.session?.reports.eventsReady(this.events);
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
    if (!d.more) this.credentialSwitch.trySwitch();
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
    s.reports.sendStatus();
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
    s.reports.sendStatus();
  }

  /** Reports a detection on the live stream; false when there is none (the caller keeps it). */
  sendDetection(d: Detection): boolean {
    return this.session?.reports.sendDetection(d) ?? false;
  }

  /** AgentStatus when something in it changed. */
  sendStatus(): void {
    this.session?.reports.sendStatus();
  }
}
