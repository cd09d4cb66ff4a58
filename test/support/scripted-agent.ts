// A scripted agent for control-plane tests: a real AgentService.Sync client
// that keeps the rule set the control plane told it about (snapshot, then
// deltas, parts included), ACKs what it applied (unless told not to), answers
// pings, and lets a test wait for a condition.
import { type ChannelCredentials, credentials, Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import {
  type AgentRule,
  AgentServiceClient,
  type CounterReport,
  type Delta,
  Hello,
  SyncMode,
  SyncRequest,
  type SyncResponse,
  type SyncStart,
} from '../../proto/gen/fleetwall/v1/agent_service.js';
import type { Status } from '../../proto/gen/google/rpc/status.js';

export interface SyncClientOptions {
  readonly nodeName: string;
  readonly labels?: Record<string, string>;
  readonly resumeRevision?: bigint;
  readonly storeId?: string;
  /** ACK every revision once applied (default true). */
  readonly autoAck?: boolean;
  /** Answer pings (default true). */
  readonly autoPong?: boolean;
  readonly agentVersion?: string;
  /** TLS (with a node client certificate: test/support/tls-control-plane.ts enrollNode); default plaintext. */
  readonly credentials?: ChannelCredentials;
}

export interface ReceivedDelta {
  readonly delta: Delta;
  readonly receivedAt: number;
}

export class SyncClient {
  readonly client: AgentServiceClient;
  private call!: ClientDuplexStream<SyncRequest, SyncResponse>;
  /** Rules as applied, by id. */
  readonly rules = new Map<bigint, AgentRule>();
  readonly received: SyncResponse[] = [];
  readonly deltas: ReceivedDelta[] = [];
  starts: SyncStart[] = [];
  appliedRevision = 0n;
  inSyncRevision = 0n;
  /** InSync was received (its revision may be 0 on an empty store). */
  inSync = false;
  storeId = '';
  pings = 0;
  counterAcks: bigint[] = [];
  ended: { code: number; details: string; error?: ServiceError } | undefined;
  private snapshot: Map<bigint, AgentRule> | undefined;
  private waiters: { pred: () => boolean; resolve: () => void }[] = [];

  constructor(
    target: string,
    readonly opts: SyncClientOptions,
  ) {
    this.client = new AgentServiceClient(target, opts.credentials ?? credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
  }

  get start(): SyncStart | undefined {
    return this.starts[this.starts.length - 1];
  }

  connect(hello: Partial<Hello> = {}): this {
    this.call = this.client.sync(new Metadata());
    this.call.on('data', (m: SyncResponse) => this.onMessage(m));
    this.call.on('error', (e: ServiceError) => {
      this.ended = { code: e.code, details: e.details, error: e };
      this.notify();
    });
    this.call.on('end', () => {
      this.ended ??= { code: 0, details: 'ended' };
      this.notify();
    });
    this.send({
      msg: {
        $case: 'hello',
        value: Hello.fromPartial({
          nodeName: this.opts.nodeName,
          labels: this.opts.labels ?? {},
          agentVersion: this.opts.agentVersion ?? 'test-agent/1',
          resumeRevision: this.opts.resumeRevision ?? 0n,
          storeId: this.opts.storeId ?? '',
          agentInstanceId: `test-${process.pid}`,
          ...hello,
        }),
      },
    });
    return this;
  }

  send(req: SyncRequest): void {
    this.call.write(SyncRequest.fromPartial(req));
  }

  ack(revision: bigint): void {
    this.send({ msg: { $case: 'ack', value: { revision } } });
  }

  nack(revision: bigint, status: Status): void {
    this.send({ msg: { $case: 'nack', value: { revision, status } } });
  }

  report(r: Partial<CounterReport>): void {
    this.send({ msg: { $case: 'counterReport', value: { seq: 0n, rules: [], interfaces: [], sampleTime: new Date(), ...r } } });
  }

  /** Half-closes the stream (the server ends it). */
  end(): void {
    this.call.end();
  }

  /** Cancels the stream and closes the channel. */
  close(): void {
    try {
      this.call?.cancel();
    } catch {
      // already closed
    }
    this.client.close();
  }

  private onMessage(m: SyncResponse): void {
    this.received.push(m);
    const msg = m.msg;
    switch (msg?.$case) {
      case 'start':
        this.starts.push(msg.value);
        this.storeId = msg.value.storeId;
        if (msg.value.mode === SyncMode.SYNC_MODE_SNAPSHOT) this.snapshot = new Map();
        break;
      case 'snapshotChunk':
        for (const r of msg.value.rules) this.snapshot!.set(r.id, r);
        if (msg.value.last) {
          this.rules.clear();
          for (const [id, r] of this.snapshot!) this.rules.set(id, r);
          this.snapshot = undefined;
        }
        break;
      case 'delta': {
        const d = msg.value;
        this.deltas.push({ delta: d, receivedAt: Date.now() });
        for (const r of d.upserts) this.rules.set(r.id, r);
        for (const id of d.deletes) this.rules.delete(id);
        if (!d.more) {
          this.appliedRevision = d.revision;
          if (this.opts.autoAck !== false && this.inSync) this.ack(d.revision);
        }
        break;
      }
      case 'inSync':
        this.inSync = true;
        this.inSyncRevision = msg.value.revision;
        this.appliedRevision = msg.value.revision;
        if (this.opts.autoAck !== false) this.ack(msg.value.revision);
        break;
      case 'ping':
        this.pings++;
        if (this.opts.autoPong !== false) this.send({ msg: { $case: 'pong', value: { nonce: msg.value.nonce } } });
        break;
      case 'counterAck':
        this.counterAcks.push(msg.value.seq);
        break;
      default:
        break;
    }
    this.notify();
  }

  private notify(): void {
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (w.pred()) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  /** Resolves when `pred` holds (checked after every message); rejects after `timeoutMs`. */
  waitFor(pred: (c: this) => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    if (pred(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(
          new Error(
            `${this.opts.nodeName}: timed out waiting for ${what} (applied revision ${this.appliedRevision}, ended: ${JSON.stringify(this.ended?.details)})`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      this.waiters.push({ pred: () => pred(this), resolve: done });
    });
  }

  waitInSync(timeoutMs?: number): Promise<void> {
    return this.waitFor((c) => c.inSync, 'InSync', timeoutMs);
  }

  waitRevision(rev: bigint, timeoutMs?: number): Promise<void> {
    return this.waitFor((c) => c.appliedRevision >= rev, `revision ${rev}`, timeoutMs);
  }

  waitEnded(timeoutMs?: number): Promise<void> {
    return this.waitFor((c) => c.ended !== undefined, 'the stream to end', timeoutMs);
  }

  /** CIDR-ish view of the applied rules for assertions: "id:bytes/len". */
  ruleIds(): bigint[] {
    return [...this.rules.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }
}
