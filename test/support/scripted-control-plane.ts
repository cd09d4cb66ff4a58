// A real gRPC server on port 0 implementing AgentService.Sync, scripted by
// the test: each agent stream becomes a ScriptedStream the test reads the
// agent's messages from and writes control-plane messages to. Used to test
// the Sync state machine exactly; the end-to-end tests use the real control
// plane.

import { Server, ServerCredentials, status, type ServerDuplexStream } from '@grpc/grpc-js';
import {
  AgentServiceService,
  type AgentRule,
  type SyncRequest,
  type SyncResponse,
  SyncMode,
} from '../../proto/gen/fleetwall/v1/agent_service.js';
import { Action, Direction, Mode } from '../../proto/gen/fleetwall/v1/rule.js';
import { parseCidr } from '../../common/src/cidr.js';

type Req = NonNullable<SyncRequest['msg']>;
type ReqOf<C extends Req['$case']> = Extract<Req, { $case: C }>['value'];

export class ScriptedStream {
  private readonly inbox: Req[] = [];
  private waiters: (() => void)[] = [];
  ended = false;
  /** Every message the agent sent on this stream, in order. */
  readonly received: Req[] = [];
  autoPong = true;

  constructor(readonly call: ServerDuplexStream<SyncRequest, SyncResponse>) {
    call.on('data', (m: SyncRequest) => {
      if (!m.msg) return;
      this.received.push(m.msg);
      if (m.msg.$case === 'ping' && this.autoPong) {
        this.send({ $case: 'pong', value: { nonce: m.msg.value.nonce } });
        return;
      }
      this.inbox.push(m.msg);
      this.wake();
    });
    const done = (): void => {
      this.ended = true;
      this.wake();
    };
    call.on('end', done);
    call.on('error', done);
    call.on('close', done);
    call.on('cancelled', done);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(msg: NonNullable<SyncResponse['msg']>): void {
    if (!this.ended) this.call.write({ msg });
  }

  /** Next message of kind `kind` (others are skipped, except those `keep` says to keep). */
  async next<C extends Req['$case']>(kind: C, timeoutMs = 10_000): Promise<ReqOf<C>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => m.$case === kind);
      if (i >= 0) {
        const [m] = this.inbox.splice(i, 1);
        return m!.value as ReqOf<C>;
      }
      if (this.ended) throw new Error(`stream ended while waiting for ${kind}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${kind} within ${timeoutMs} ms (got: ${this.inbox.map((m) => m.$case).join(',') || 'nothing'})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Messages of `kind` received so far (not consumed). */
  pending<C extends Req['$case']>(kind: C): ReqOf<C>[] {
    return this.inbox.filter((m) => m.$case === kind).map((m) => m.value as ReqOf<C>);
  }

  drop<C extends Req['$case']>(kind: C): void {
    for (let i = this.inbox.length - 1; i >= 0; i--) if (this.inbox[i]!.$case === kind) this.inbox.splice(i, 1);
  }

  /** Ends the stream from the server side with a status (default UNAVAILABLE). */
  fail(code = status.UNAVAILABLE, details = 'scripted failure'): void {
    if (this.ended) return;
    this.ended = true;
    this.call.emit('error', { code, details });
    this.wake();
  }

  startSnapshot(revision: bigint, storeId: string, pingMs = 10_000): void {
    this.send({
      $case: 'start',
      value: {
        mode: SyncMode.SYNC_MODE_SNAPSHOT,
        revision,
        storeId,
        controlPlaneId: 'scripted',
        pingInterval: { seconds: BigInt(Math.floor(pingMs / 1000)), nanos: (pingMs % 1000) * 1e6 },
      },
    });
  }

  startResume(revision: bigint, storeId: string, pingMs = 10_000): void {
    this.send({
      $case: 'start',
      value: {
        mode: SyncMode.SYNC_MODE_RESUME,
        revision,
        storeId,
        controlPlaneId: 'scripted',
        pingInterval: { seconds: BigInt(Math.floor(pingMs / 1000)), nanos: (pingMs % 1000) * 1e6 },
      },
    });
  }

  chunk(revision: bigint, rules: AgentRule[], last: boolean, totalRules = 0n): void {
    this.send({ $case: 'snapshotChunk', value: { revision, rules, last, totalRules } });
  }

  delta(revision: bigint, upserts: AgentRule[], deletes: bigint[] = [], more = false): void {
    this.send({ $case: 'delta', value: { revision, upserts, deletes, commitTime: new Date(), more } });
  }

  inSync(revision: bigint): void {
    this.send({ $case: 'inSync', value: { revision } });
  }
}

export class ScriptedControlPlane {
  private readonly server = new Server();
  readonly streams: ScriptedStream[] = [];
  private waiters: (() => void)[] = [];
  port = 0;
  private taken = 0;

  static async start(): Promise<ScriptedControlPlane> {
    const cp = new ScriptedControlPlane();
    cp.server.addService(AgentServiceService, {
      sync: (call: ServerDuplexStream<SyncRequest, SyncResponse>) => {
        cp.streams.push(new ScriptedStream(call));
        const w = cp.waiters;
        cp.waiters = [];
        for (const f of w) f();
      },
    });
    cp.port = await new Promise<number>((resolve, reject) =>
      cp.server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port))),
    );
    return cp;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The next stream an agent opens (in order of arrival). */
  async accept(timeoutMs = 15_000): Promise<ScriptedStream> {
    const deadline = Date.now() + timeoutMs;
    while (this.streams.length <= this.taken) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no agent stream within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.streams[this.taken++]!;
  }

  get streamCount(): number {
    return this.streams.length;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

export function wireRule(
  id: number | bigint,
  cidr: string,
  opts: { action?: 'deny' | 'allow'; direction?: 'ingress' | 'egress'; mode?: 'enforce' | 'monitor'; expire?: Date } = {},
): AgentRule {
  const p = parseCidr(cidr);
  return {
    id: BigInt(id),
    address: Buffer.from(p.bytes),
    prefixLength: p.len,
    action: opts.action === 'allow' ? Action.ACTION_ALLOW : Action.ACTION_DENY,
    direction: opts.direction === 'egress' ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS,
    mode: opts.mode === 'monitor' ? Mode.MODE_MONITOR : Mode.MODE_ENFORCE,
    expireTime: opts.expire,
  };
}
