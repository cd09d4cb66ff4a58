// Prometheus metrics (prom-client), one registry per control-plane instance.
//
// Cardinality is bounded: traffic counters are per node (x verdict) and per
// rule only for the top N rules by packets (FLEETWALL_METRICS_TOP_RULES);
// they are read from the persisted totals at scrape time (this process's
// unflushed totals are flushed first), so every control plane exports the
// same fleet-wide values.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { SyncMode } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { CounterStore } from '../store/counter-store.js';

export interface SyncMetrics {
  observeApplied(ms: number): void;
  observeFanout(ms: number, sessions: number): void;
  sessionStarted(mode: SyncMode): void;
}

export interface MetricsSources {
  readonly counters: CounterStore;
  readonly flushCounters: () => Promise<void>;
  readonly topRules: number;
  readonly connectedAgents: () => number;
  readonly syncGroups: () => number;
  /** Nodes connected to this process, with the revision each has ACKed. */
  readonly connectedNodes: () => readonly { name: string; appliedRevision: bigint }[];
  readonly revision: () => bigint;
  readonly cachedRules: () => number;
  readonly controlPlaneId: string;
}

const VERDICTS = [
  ['pass', 'passPackets', 'passBytes'],
  ['drop', 'dropPackets', 'dropBytes'],
  ['would_drop', 'wouldDropPackets', 'wouldDropBytes'],
] as const;

export class ControlPlaneMetrics implements SyncMetrics {
  readonly registry = new Registry();
  private readonly applied: Histogram;
  private readonly fanout: Histogram;
  private readonly sessions: Counter;
  readonly grpcRequests: Counter;

  constructor(src: MetricsSources) {
    const registry = this.registry;
    registry.setDefaultLabels({ control_plane: src.controlPlaneId });
    collectDefaultMetrics({ register: registry, prefix: 'fleetwall_controlplane_' });

    // One scrape reads the store once for both node metrics.
    let cached:
      | {
          at: number;
          data: Promise<{ nodes: Awaited<ReturnType<CounterStore['nodes']>>; rules: Awaited<ReturnType<CounterStore['rules']>> }>;
        }
      | undefined;
    const read = () => {
      const now = Date.now();
      if (!cached || now - cached.at > 500) {
        cached = {
          at: now,
          data: (async () => {
            await src.flushCounters().catch(() => undefined);
            const [nodes, rules] = await Promise.all([
              src.counters.nodes(),
              src.topRules > 0 ? src.counters.rules({ top: src.topRules }) : Promise.resolve([]),
            ]);
            return { nodes, rules };
          })(),
        };
      }
      return cached.data;
    };

    new Counter({
      name: 'fleetwall_node_packets_total',
      help: 'Packets seen by a node, by verdict (sum over its interfaces and directions).',
      labelNames: ['node', 'verdict'],
      registers: [registry],
      async collect() {
        const { nodes } = await read();
        this.reset();
        for (const n of nodes) for (const [v, p] of VERDICTS) this.inc({ node: n.nodeName, verdict: v }, Number(n.totals?.[p] ?? 0n));
      },
    });
    new Counter({
      name: 'fleetwall_node_bytes_total',
      help: 'Bytes seen by a node, by verdict.',
      labelNames: ['node', 'verdict'],
      registers: [registry],
      async collect() {
        const { nodes } = await read();
        this.reset();
        for (const n of nodes) for (const [v, , b] of VERDICTS) this.inc({ node: n.nodeName, verdict: v }, Number(n.totals?.[b] ?? 0n));
      },
    });
    new Counter({
      name: 'fleetwall_rule_packets_total',
      help: `Packets counted against a rule, fleet-wide; only the top ${src.topRules} rules by packets.`,
      labelNames: ['rule_id', 'cidr'],
      registers: [registry],
      async collect() {
        const { rules } = await read();
        this.reset();
        for (const r of rules) this.inc({ rule_id: r.ruleId.toString(), cidr: r.cidr }, Number(r.packets));
      },
    });
    new Counter({
      name: 'fleetwall_rule_bytes_total',
      help: `Bytes counted against a rule, fleet-wide; only the top ${src.topRules} rules by packets.`,
      labelNames: ['rule_id', 'cidr'],
      registers: [registry],
      async collect() {
        const { rules } = await read();
        this.reset();
        for (const r of rules) this.inc({ rule_id: r.ruleId.toString(), cidr: r.cidr }, Number(r.bytes));
      },
    });
    new Gauge({
      name: 'fleetwall_node_applied_revision',
      help: "Revision a node's agent has ACKed (in its kernel); nodes connected to this control plane.",
      labelNames: ['node'],
      registers: [registry],
      collect() {
        this.reset();
        for (const n of src.connectedNodes()) this.set({ node: n.name }, Number(n.appliedRevision));
      },
    });
    new Gauge({
      name: 'fleetwall_node_connected',
      help: '1 while a node has a live Sync stream to this control plane.',
      labelNames: ['node'],
      registers: [registry],
      collect() {
        this.reset();
        for (const n of src.connectedNodes()) this.set({ node: n.name }, 1);
      },
    });
    new Gauge({
      name: 'fleetwall_agents_connected',
      help: 'Agents with a live Sync stream to this control plane.',
      registers: [registry],
      collect() {
        this.set(src.connectedAgents());
      },
    });
    new Gauge({
      name: 'fleetwall_sync_groups',
      help: 'Groups of connected agents that receive identical deltas (labels projected onto the keys selectors use).',
      registers: [registry],
      collect() {
        this.set(src.syncGroups());
      },
    });
    new Gauge({
      name: 'fleetwall_revision',
      help: 'Latest rule-set revision this control plane has applied.',
      registers: [registry],
      collect() {
        this.set(Number(src.revision()));
      },
    });
    new Gauge({
      name: 'fleetwall_rules',
      help: 'Rules in the rule set.',
      registers: [registry],
      collect() {
        this.set(src.cachedRules());
      },
    });
    const buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
    this.applied = new Histogram({
      name: 'fleetwall_policy_implementation_delay_seconds',
      help: 'From the commit of a revision to an agent ACKing it (in its kernel).',
      buckets,
      registers: [registry],
    });
    this.fanout = new Histogram({
      name: 'fleetwall_sync_fanout_delay_seconds',
      help: 'From the commit of a revision to its delta being written to every stream of this control plane.',
      buckets,
      registers: [registry],
    });
    this.sessions = new Counter({
      name: 'fleetwall_sync_sessions_total',
      help: 'Sync streams that reached InSync, by mode.',
      labelNames: ['mode'],
      registers: [registry],
    });
    this.grpcRequests = new Counter({
      name: 'fleetwall_grpc_requests_total',
      help: 'gRPC calls handled, by method and status code.',
      labelNames: ['method', 'code'],
      registers: [registry],
    });
  }

  observeApplied(ms: number): void {
    this.applied.observe(ms / 1000);
  }

  observeFanout(ms: number, sessions: number): void {
    if (sessions > 0) this.fanout.observe(ms / 1000);
  }

  sessionStarted(mode: SyncMode): void {
    this.sessions.inc({ mode: mode === SyncMode.SYNC_MODE_RESUME ? 'resume' : 'snapshot' });
  }

  async render(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
