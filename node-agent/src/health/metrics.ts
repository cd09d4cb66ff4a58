// Prometheus metrics (prom-client, a registry of our own): applied revision,
// rules in the kernel, map fill ratio per table, the maps' kernel memory and
// sizes, sync state, last error, apply and propagation latency, plus Node's
// process metrics (RSS, CPU).

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AgentHealth } from './agent-health.js';

const SYNC_STATES = ['connecting', 'syncing', 'in_sync', 'degraded', 'disconnected', 'stopped'];

export class AgentMetrics {
  readonly registry = new Registry();
  readonly applySeconds: Histogram;
  readonly propagationSeconds: Histogram;
  readonly refusals: Counter;

  constructor(health: () => AgentHealth) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'fleetwall_agent_' });
    const g = (name: string, help: string, labelNames: string[], collect: (this: Gauge) => void): Gauge =>
      new Gauge({ name, help, labelNames, registers: [r], collect });
    g(
      'fleetwall_agent_events_total',
      'Sampled drop events: read from the kernel ring, sent to the control plane, dropped by the full queue (oldest first), lost in the kernel (its ring was full).',
      ['what'],
      function () {
        const e = health().events;
        this.set({ what: 'read' }, e.read);
        this.set({ what: 'sent' }, e.sent);
        this.set({ what: 'queue_dropped' }, e.queueDropped);
        this.set({ what: 'kernel_lost' }, e.kernelLost);
      },
    );
    g('fleetwall_agent_events_queued', 'Sampled drop events waiting to be sent.', [], function () {
      this.set(health().events.queued);
    });
    g('fleetwall_agent_applied_revision', 'Revision the kernel state corresponds to (pinned meta).', [], function () {
      this.set(Number(health().appliedRevision));
    });
    g('fleetwall_agent_desired_revision', 'Latest revision received from the control plane.', [], function () {
      this.set(Number(health().desiredRevision));
    });
    g('fleetwall_agent_rules_in_kernel', 'Prefixes in the kernel tables.', [], function () {
      this.set(health().rulesInKernel);
    });
    g('fleetwall_agent_rules_desired', 'Rules in the desired set (unexpired).', [], function () {
      this.set(health().rulesDesired);
    });
    g('fleetwall_agent_table_entries', 'Prefixes per kernel table.', ['table'], function () {
      for (const t of health().tables) this.set({ table: t.table }, t.entries);
    });
    g('fleetwall_agent_map_fill_ratio', 'Entries / capacity per kernel table.', ['table'], function () {
      for (const t of health().tables) this.set({ table: t.table }, t.capacity > 0 ? t.entries / t.capacity : 0);
    });
    g(
      'fleetwall_agent_table_size',
      'Prefixes each kernel table is sized for now (grows and shrinks with its entries).',
      ['table'],
      function () {
        for (const t of health().tables) this.set({ table: t.table }, t.size);
      },
    );
    g('fleetwall_agent_kernel_memory_bytes', "Kernel memory of fleetwall's maps (their memlock), per map.", ['map'], function () {
      this.reset();
      const byName = new Map<string, number>();
      for (const m of health().kernelMemory.maps) byName.set(m.name, (byName.get(m.name) ?? 0) + m.bytes);
      for (const [name, bytes] of byName) this.set({ map: name }, bytes);
    });
    g(
      'fleetwall_agent_kernel_memory_per_cpu_bytes',
      'The part of that kernel memory that is there once per CPU, per CPU.',
      [],
      function () {
        this.set(health().kernelMemory.perCpuBytes);
      },
    );
    g('fleetwall_agent_map_resizes', 'Times the maps were resized (a generation of maps swapped in) since start.', [], function () {
      this.set(health().kernelMemory.resizes);
    });
    g(
      'fleetwall_agent_map_resize_failures',
      'Times a resize of the maps failed since start (the maps in force stayed; reason in /healthz), by kind (grow, shrink).',
      ['kind'],
      function () {
        const f = health().kernelMemory.resizeFailures;
        this.set({ kind: 'grow' }, f.grow);
        this.set({ kind: 'shrink' }, f.shrink);
      },
    );
    g('fleetwall_agent_counter_slots_in_use', 'Rule counter slots owned by rules.', [], function () {
      this.set(health().counterSlotsInUse);
    });
    g('fleetwall_agent_sync_state', 'Sync state (1 for the current one).', ['state'], function () {
      const s = health().syncState;
      for (const st of SYNC_STATES) this.set({ state: st }, st === s ? 1 : 0);
    });
    g('fleetwall_agent_connected', '1 while a Sync stream is established.', [], function () {
      this.set(health().connected ? 1 : 0);
    });
    g('fleetwall_agent_last_error', '1 while the last change could not be applied (message in the label).', ['message'], function () {
      this.reset();
      const e = health().lastError;
      if (e !== '') this.set({ message: e.slice(0, 200) }, 1);
    });
    g('fleetwall_agent_reconnects', 'Connection attempts to the control plane.', [], function () {
      this.set(health().reconnects);
    });
    g('fleetwall_agent_snapshots', 'Sync streams that started with a full snapshot.', [], function () {
      this.set(health().snapshots);
    });
    g('fleetwall_agent_resumes', 'Sync streams that resumed from the pinned revision.', [], function () {
      this.set(health().resumes);
    });
    g('fleetwall_agent_expired_locally', 'Rules removed by local expiry.', [], function () {
      this.set(health().expiredLocally);
    });
    this.applySeconds = new Histogram({
      name: 'fleetwall_agent_apply_seconds',
      help: 'Time to apply one change to the kernel (plan + datapath).',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [r],
    });
    this.propagationSeconds = new Histogram({
      name: 'fleetwall_agent_propagation_seconds',
      help: 'From the revision commit (control plane clock) to its ACK.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [r],
    });
    this.refusals = new Counter({
      name: 'fleetwall_agent_refusals_total',
      help: 'Changes the kernel could not take (NACKed).',
      labelNames: ['reason'],
      registers: [r],
    });
  }
}
