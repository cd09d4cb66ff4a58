// A child process running many simulated agents: real gRPC clients, each on
// its own HTTP/2 connection, on the real AgentService.Sync stream. Each agent
// says Hello, takes its snapshot, ACKs InSync and every complete delta,
// answers pings, and records when each revision arrived (wall clock, sub-ms)
// against the revision's commit time. Driven over IPC by bench/controlplane.ts.
import { credentials, Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import { AgentServiceClient, SyncRequest, type SyncResponse } from '../../proto/gen/fleetwall/v1/agent_service.js';

export type WorkerCommand =
  | { type: 'start'; target: string; count: number; offset: number; connectPerSecond: number }
  | { type: 'report' }
  | { type: 'stop' };

export type WorkerEvent =
  | { type: 'ready'; agents: number; revision: string }
  | { type: 'report'; revisions: RevisionStat[]; ended: number }
  | { type: 'error'; message: string };

/** Per revision, over this worker's agents. */
export interface RevisionStat {
  revision: string;
  /** Agents that had the whole revision. */
  count: number;
  /** Largest and summed (arrival of the last part - commit time), ms. */
  maxMs: number;
  sumMs: number;
  /** Latest arrival of the last part, epoch ms. */
  lastArrival: number;
  upserts: number;
  deletes: number;
}

const now = () => performance.timeOrigin + performance.now();
const stats = new Map<string, RevisionStat>();
const agents: Agent[] = [];
let ended = 0;

class Agent {
  private readonly client: AgentServiceClient;
  private call!: ClientDuplexStream<SyncRequest, SyncResponse>;
  inSync = false;
  revision = 0n;
  private upserts = 0;
  private deletes = 0;

  constructor(
    target: string,
    readonly name: string,
  ) {
    // A local subchannel pool: every agent gets its own connection, like real nodes.
    this.client = new AgentServiceClient(target, credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
  }

  start(onInSync: () => void): void {
    this.call = this.client.sync(new Metadata());
    this.call.on('data', (m: SyncResponse) => {
      const msg = m.msg;
      switch (msg?.$case) {
        case 'inSync':
          this.inSync = true;
          this.revision = msg.value.revision;
          this.send({ msg: { $case: 'ack', value: { revision: msg.value.revision } } });
          onInSync();
          break;
        case 'delta': {
          const d = msg.value;
          this.upserts += d.upserts.length;
          this.deletes += d.deletes.length;
          if (d.more) break;
          const t = now();
          const key = d.revision.toString();
          let s = stats.get(key);
          if (!s) {
            s = { revision: key, count: 0, maxMs: 0, sumMs: 0, lastArrival: 0, upserts: 0, deletes: 0 };
            stats.set(key, s);
          }
          const lat = d.commitTime ? t - d.commitTime.getTime() : 0;
          s.count++;
          s.sumMs += lat;
          if (lat > s.maxMs) s.maxMs = lat;
          if (t > s.lastArrival) s.lastArrival = t;
          s.upserts = Math.max(s.upserts, this.upserts);
          s.deletes = Math.max(s.deletes, this.deletes);
          this.upserts = 0;
          this.deletes = 0;
          this.revision = d.revision;
          this.send({ msg: { $case: 'ack', value: { revision: d.revision } } });
          break;
        }
        case 'ping':
          this.send({ msg: { $case: 'pong', value: { nonce: msg.value.nonce } } });
          break;
        default:
          break;
      }
    });
    this.call.on('error', () => {
      ended++;
    });
    this.send({
      msg: {
        $case: 'hello',
        value: {
          nodeName: this.name,
          labels: { env: 'bench', host: this.name },
          agentVersion: 'bench-agent/1',
          interfaces: [],
          resumeRevision: 0n,
          storeId: '',
          agentInstanceId: `${process.pid}-${this.name}`,
          capacityPerTable: 0n,
        },
      },
    });
  }

  private send(req: SyncRequest): void {
    this.call.write(req);
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
        const a = new Agent(cmd.target, `bench-node-${String(cmd.offset + i).padStart(5, '0')}`);
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
    process.send!({ type: 'report', revisions: [...stats.values()], ended } satisfies WorkerEvent);
  } else if (cmd.type === 'stop') {
    for (const a of agents) a.close();
    setTimeout(() => process.exit(0), 200);
  }
});

process.on('disconnect', () => process.exit(0));
