// A child process running many simulated agents: real gRPC clients, each on
// its own HTTP/2 connection, on the real AgentService.Sync stream. Each agent
// says Hello, takes its snapshot, ACKs InSync and every complete delta,
// answers pings, and records when each revision arrived (wall clock, sub-ms)
// against the revision's commit time (nanosecond Timestamp).
//
// The agents are lean on purpose: 1,000 of them share two vCPUs with the
// control plane in the benchmark, so they read the few fields they need
// straight from the wire bytes (no message objects) and send pre-encoded
// ACKs; what is measured is then mostly the control plane and the network
// stack, not the simulation. Driven over IPC by bench/controlplane.ts.
//
// With `tls` the agents dial mutual TLS, as real nodes do: trusting the
// given CA and presenting each its own node certificate, enrolled by
// bench/controlplane.ts with a join token per node (one shared key: these
// are simulations); every TLS handshake is counted (checkServerIdentity
// runs once per handshake), so the bench shows that connections are
// reused, not redone per message.
import { checkServerIdentity } from 'node:tls';
import { credentials, makeGenericClientConstructor, Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import { Hello, SyncRequest } from '../../proto/gen/fleetwall/v1/agent_service.js';

export type WorkerCommand =
  | { type: 'start'; target: string; count: number; offset: number; connectPerSecond: number; tls?: WorkerTls }
  | { type: 'report' }
  | { type: 'stop' };

/** The CA to trust, the nodes' key and, per agent of this worker (in order), its name and certificate. */
export interface WorkerTls {
  readonly ca: string;
  readonly keyPem: string;
  readonly nodes: readonly { readonly name: string; readonly certPem: string }[];
}

export type WorkerEvent =
  | { type: 'ready'; agents: number; revision: string }
  | { type: 'report'; revisions: RevisionStat[]; ended: number; handshakes: number }
  | { type: 'error'; message: string };

/** Per revision, over this worker's agents. */
export interface RevisionStat {
  revision: string;
  /** Agents that had the whole revision. */
  count: number;
  /** Largest and summed (arrival of the last part - commit time), ms. */
  maxMs: number;
  minMs: number;
  sumMs: number;
  /** Latest arrival of the last part, epoch ms. */
  lastArrival: number;
  upserts: number;
  deletes: number;
}

const Raw = makeGenericClientConstructor(
  {
    sync: {
      path: '/fleetwall.v1.AgentService/Sync',
      requestStream: true,
      responseStream: true,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    },
  },
  'fleetwall.v1.AgentService',
) as unknown as new (
  target: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  opts: object,
) => {
  sync(md: Metadata): ClientDuplexStream<Buffer, Buffer>;
  close(): void;
};

const now = () => performance.timeOrigin + performance.now();
const stats = new Map<bigint, RevisionStat>();
const agents: Agent[] = [];
let ended = 0;
/** TLS handshakes these agents made (each checks the server's identity once). */
let handshakes = 0;

// Minimal protobuf reading.
let pos = 0;
function varint(b: Buffer): number {
  let x = 0;
  let mul = 1;
  for (;;) {
    const c = b[pos++]!;
    x += (c & 0x7f) * mul;
    if (c < 0x80) return x;
    mul *= 128;
  }
}
function varintBig(b: Buffer): bigint {
  let x = 0n;
  let shift = 0n;
  for (;;) {
    const c = b[pos++]!;
    x |= BigInt(c & 0x7f) << shift;
    if (c < 0x80) return x;
    shift += 7n;
  }
}
function skip(b: Buffer, wire: number): void {
  if (wire === 0) varint(b);
  else if (wire === 2) {
    const l = varint(b); // read before adding: `pos += varint(b)` would add to the old pos
    pos += l;
  } else if (wire === 1) pos += 8;
  else if (wire === 5) pos += 4;
}

function encodeVarint(n: bigint, out: number[]): void {
  while (n > 0x7fn) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
}
/** SyncRequest{field{1: value}} (ack = 2, pong = 5). */
function request(field: number, value: bigint): Buffer {
  const inner: number[] = [];
  if (value !== 0n) {
    inner.push(0x08);
    encodeVarint(value, inner);
  }
  return Buffer.from([(field << 3) | 2, inner.length, ...inner]);
}

class Agent {
  private readonly client;
  private call!: ClientDuplexStream<Buffer, Buffer>;
  revision = 0n;
  private upserts = 0;
  private deletes = 0;

  constructor(
    target: string,
    readonly name: string,
    tls: { ca: string; keyPem: string; certPem: string } | undefined,
  ) {
    const creds = tls
      ? credentials.createSsl(Buffer.from(tls.ca), Buffer.from(tls.keyPem), Buffer.from(tls.certPem), {
          checkServerIdentity: (host, cert) => {
            handshakes++;
            return checkServerIdentity(host, cert);
          },
        })
      : credentials.createInsecure();
    // A local subchannel pool: every agent gets its own connection, like real nodes.
    this.client = new Raw(target, creds, {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
  }

  start(onInSync: () => void): void {
    this.call = this.client.sync(new Metadata());
    this.call.on('data', (b: Buffer) => this.onMessage(b, onInSync));
    this.call.on('error', () => {
      ended++;
    });
    const hello = Hello.fromPartial({
      nodeName: this.name,
      labels: { env: 'bench', host: this.name },
      agentVersion: 'bench-agent/1',
      agentInstanceId: `${process.pid}-${this.name}`,
    });
    this.call.write(Buffer.from(SyncRequest.encode({ msg: { $case: 'hello', value: hello } }).finish()));
  }

  private onMessage(b: Buffer, onInSync: () => void): void {
    pos = 0;
    const tag = b[pos++]!;
    const len = varint(b);
    const end = pos + len;
    if (tag === 0x1a) {
      // in_sync{revision}
      let rev = 0n;
      while (pos < end) {
        const t = varint(b);
        if (t === 0x08) rev = varintBig(b);
        else skip(b, t & 7);
      }
      this.revision = rev;
      this.call.write(request(2, rev));
      onInSync();
    } else if (tag === 0x22) {
      // delta{revision, upserts, deletes, commit_time, more}
      let rev = 0n;
      let more = false;
      let commitMs = 0;
      while (pos < end) {
        const t = varint(b);
        if (t === 0x08) rev = varintBig(b);
        else if (t === 0x12) {
          this.upserts++;
          const l = varint(b);
          pos += l;
        } else if (t === 0x1a) {
          const l = varint(b);
          const stop = pos + l;
          while (pos < stop) {
            varint(b);
            this.deletes++;
          }
        } else if (t === 0x22) {
          const l = varint(b);
          const stop = pos + l;
          let s = 0;
          let n = 0;
          while (pos < stop) {
            const f = varint(b);
            if (f === 0x08) s = varint(b);
            else if (f === 0x10) n = varint(b);
            else skip(b, f & 7);
          }
          commitMs = s * 1000 + n / 1e6;
        } else if (t === 0x28) more = varint(b) !== 0;
        else skip(b, t & 7);
      }
      if (more) return;
      const at = now();
      let s = stats.get(rev);
      if (!s) {
        s = { revision: rev.toString(), count: 0, maxMs: 0, minMs: Infinity, sumMs: 0, lastArrival: 0, upserts: 0, deletes: 0 };
        stats.set(rev, s);
      }
      const lat = commitMs ? at - commitMs : 0;
      s.count++;
      s.sumMs += lat;
      if (lat > s.maxMs) s.maxMs = lat;
      if (lat < s.minMs) s.minMs = lat;
      if (at > s.lastArrival) s.lastArrival = at;
      s.upserts = Math.max(s.upserts, this.upserts);
      s.deletes = Math.max(s.deletes, this.deletes);
      this.upserts = 0;
      this.deletes = 0;
      this.revision = rev;
      this.call.write(request(2, rev));
    } else if (tag === 0x2a) {
      // ping{nonce} -> pong{nonce}
      let nonce = 0n;
      while (pos < end) {
        const t = varint(b);
        if (t === 0x08) nonce = varintBig(b);
        else skip(b, t & 7);
      }
      this.call.write(request(5, nonce));
    }
    // start, snapshot chunks, pong, counter ack: nothing to do.
  }

  close(): void {
    try {
      this.call.cancel();
    } catch {
      // gone
    }
    this.client.close();
  }
}

process.on('message', (cmd: WorkerCommand) => {
  if (cmd.type === 'start') {
    let inSync = 0;
    const gap = 1000 / cmd.connectPerSecond;
    for (let i = 0; i < cmd.count; i++) {
      setTimeout(() => {
        const node = cmd.tls?.nodes[i];
        const a = new Agent(
          cmd.target,
          node?.name ?? `bench-node-${String(cmd.offset + i).padStart(5, '0')}`,
          cmd.tls && node ? { ca: cmd.tls.ca, keyPem: cmd.tls.keyPem, certPem: node.certPem } : undefined,
        );
        agents.push(a);
        a.start(() => {
          inSync++;
          if (inSync === cmd.count) {
            const rev = agents.reduce((m, x) => (x.revision > m ? x.revision : m), 0n);
            process.send!({ type: 'ready', agents: inSync, revision: rev.toString() } satisfies WorkerEvent);
          }
        });
      }, i * gap);
    }
  } else if (cmd.type === 'report') {
    process.send!({ type: 'report', revisions: [...stats.values()], ended, handshakes } satisfies WorkerEvent);
  } else if (cmd.type === 'stop') {
    for (const a of agents) a.close();
    setTimeout(() => process.exit(0), 200);
  }
});

process.on('disconnect', () => process.exit(0));
