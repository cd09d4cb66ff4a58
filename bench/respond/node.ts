// bench:respond: one node in the bench's process, made of the agent's real
// parts - the datapath (its own pin dir), the engine, the responder and the
// agent's Sync client to the control plane - without an interface: packets
// are BPF_PROG_TEST_RUN runs of its XDP program, so a frame's verdict is
// read the moment it is decided. Sampled drop events off: the datapath runs
// the programs without event code (fw_xdp_noev), as such a node does.
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { type BpfDatapath, openDatapath, removePins } from '../../node-agent/src/datapath/bpf-datapath.js';
import { CounterReporter } from '../../node-agent/src/counters/counter-reporter.js';
import { Engine } from '../../node-agent/src/engine.js';
import { Responder } from '../../node-agent/src/respond/responder.js';
import { SyncClient } from '../../node-agent/src/sync/sync-client.js';
import { EVENTS_OFF } from '../lib/events-off.js';

export interface BenchNode {
  readonly name: string;
  readonly dp: BpfDatapath;
  readonly engine: Engine;
  readonly responder: Responder;
  readonly sync: SyncClient;
  close(): Promise<void>;
}

const log = pino({ level: 'silent' });

export async function startNode(name: string, target: string): Promise<BenchNode> {
  const pinDir = `/sys/fs/bpf/fleetwall-bench-respond-${process.pid}-${randomBytes(3).toString('hex')}`;
  const dp = openDatapath({ pinDir, capacity: { prefixesPerTable: 1 << 16, counterSlots: 1 << 16 }, events: EVENTS_OFF });
  const engine = await Engine.open(dp, log);
  const counters = new CounterReporter(dp, engine.slots, engine.ruleIds);
  const sync = new SyncClient(
    {
      controlPlanes: [target],
      nodeName: name,
      labels: {},
      agentVersion: 'bench',
      pingIntervalMs: 10_000,
      counterIntervalMs: 60_000,
      reconnectMinMs: 100,
      reconnectMaxMs: 1000,
      capacityPerTable: 1 << 16,
    },
    engine,
    counters,
    {
      interfaces: () => [],
      agentStatus: () => ({
        interfaces: [],
        rulesInKernel: 0n,
        mapFillRatio: 0,
        lastError: '',
        appliedRevision: engine.applied.revision,
        failsafe: [],
        kernelMemoryBytes: 0n,
        mapResizeFailures: undefined,
      }),
    },
    log,
  );
  const responder = new Responder(dp.policies, engine, (d) => sync.sendDetection(d), log, 25);
  sync.onPolicies = (p) => responder.setPolicies(p);
  sync.onLive = () => responder.flush();
  engine.requestReconcile();
  await engine.idle();
  responder.start();
  sync.start();
  return {
    name,
    dp,
    engine,
    responder,
    sync,
    async close() {
      responder.stop();
      await sync.stop();
      engine.stop();
      await dp.settled(); // a swap a ban's apply made due: landed before the fds and pins go
      dp.close();
      try {
        openDatapath({ pinDir }).uninstall();
      } catch {
        /* gone */
      }
      removePins(pinDir);
    },
  };
}
