// The agent, assembled: open the pinned datapath, open the engine on it (the
// pinned state read back), reconcile the difference (no flush), attach the
// interfaces, serve /healthz + /metrics, then follow the control plane. stop() leaves every
// map, program and link in place: the kernel keeps enforcing.

import { writeFileSync, renameSync } from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { AgentStatus } from '../../proto/gen/fleetwall/v1/agent_service.js';
import type { InterfaceStatus, MapResizeFailures } from '../../proto/gen/fleetwall/v1/node.js';
import type { AgentConfig } from './config.js';
import type { Datapath, DatapathOptions, InterfaceAttachment, KernelMemory } from './datapath/datapath.js';
import { CounterReporter } from './counters/counter-reporter.js';
import { Engine } from './engine.js';
import { EventPump } from './events/event-pump.js';
import { AgentEventResolver } from './events/event-resolver.js';
import type { AgentHealth, EventHealth, KernelMemoryHealth } from './health/agent-health.js';
import { HealthServer } from './health/health-server.js';
import { AgentMetrics } from './health/metrics.js';
import { TABLES, tableName } from './reconcile/prefix-key.js';
import { releaseTransientMemory } from './memory.js';
import { SyncClient } from './sync/sync-client.js';
import type { NodeIdentity } from './identity/node-identity.js';
import { interfaceStatus } from './sync/wire.js';
import { AGENT_VERSION } from './version.js';
import { Failsafe } from './failsafe/failsafe.js';
import { Responder } from './respond/responder.js';

export interface OpenDatapathOptions extends DatapathOptions {
  readonly logger: Logger;
}

export interface AgentDeps {
  readonly openDatapath: (opts: OpenDatapathOptions) => Datapath;
  readonly logger: Logger;
  /** The node's certificate (TLS to the control plane); undefined: plaintext. */
  readonly identity?: NodeIdentity | undefined;
}

/** How often interfaces that failed to attach are tried again. */
const REATTACH_MS = 5_000;
/** How long a reading of the maps' kernel memory serves /metrics, /healthz and AgentStatus (a few syscalls each). */
const MEMORY_TTL_MS = 1_000;

export class Agent {
  readonly engine: Engine;
  readonly counters: CounterReporter;
  readonly sync: SyncClient;
  readonly metrics: AgentMetrics;
  /** Allows for the control planes' addresses and --failsafe-cidrs, whatever the policy. */
  readonly failsafe: Failsafe;
  /** Sampled drop events, kernel -> Sync (null: off, or a datapath without events). */
  readonly events: EventPump | null;
  /** Detection policies: local bans and detections (undefined on a datapath without policy maps). */
  readonly responder: Responder | undefined;
  private readonly http: HealthServer;
  private readonly attached = new Map<string, InterfaceAttachment>();
  private readonly attachErrors = new Map<string, string>();
  private reattachTimer: NodeJS.Timeout | undefined;
  private readyFlag = false;
  private stopped = false;
  httpPort = 0;
  private readonly startedAt = Date.now();
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private memory: { at: number; value: KernelMemory } | undefined;

  private constructor(
    readonly cfg: AgentConfig,
    private readonly log: Logger,
    readonly dp: Datapath,
    engine: Engine,
    private readonly identity: NodeIdentity | undefined,
  ) {
    this.engine = engine;
    this.counters = new CounterReporter(dp, engine.slots, engine.ruleIds);
    this.metrics = new AgentMetrics(() => this.health());
    this.sync = new SyncClient(
      {
        controlPlanes: cfg.controlPlanes,
        nodeName: cfg.nodeName,
        labels: cfg.labels,
        agentVersion: AGENT_VERSION,
        pingIntervalMs: cfg.pingIntervalMs,
        counterIntervalMs: cfg.counterIntervalMs,
        reconnectMinMs: cfg.reconnectMinMs,
        reconnectMaxMs: cfg.reconnectMaxMs,
        capacityPerTable: dp.capacity.prefixesPerTable,
        ...(identity ? { connection: () => ({ credentials: identity.credentials(), options: identity.channelOptions() }) } : {}),
      },
      this.engine,
      this.counters,
      { interfaces: () => this.interfaces(), agentStatus: () => this.agentStatus() },
      log.child({ component: 'sync' }),
    );
    const evSource = cfg.events.enabled ? (dp.events?.() ?? null) : null;
    this.events = evSource
      ? new EventPump(
          evSource,
          new AgentEventResolver(engine.slots, engine.ruleIds, (i) => [...this.attached.values()].find((a) => a.ifindex === i)?.ifname),
          () => engine.slots.watermark,
          { queueSize: cfg.events.queueSize, minIntervalMs: cfg.events.intervalMs, batchSize: 4096 },
          log.child({ component: 'events' }),
        )
      : null;
    const pump = this.events;
    this.sync.events = pump ? { intervalMs: cfg.events.intervalMs, take: () => pump.take() } : null;
    if (pump) pump.onEvents = () => this.sync.eventsReady();
    this.sync.onPropagation = (ms) => this.metrics.propagationSeconds.observe(ms / 1000);
    this.failsafe = new Failsafe(cfg, engine, log.child({ component: 'failsafe' }));
    // Every reconnect re-resolves the control-plane names (a moved control plane keeps its failsafe).
    this.sync.onConnecting = () => this.failsafe.refreshSoon();
    const policies = dp.policies;
    if (policies) {
      const r = new Responder(
        policies,
        engine,
        (d) => this.sync.sendDetection(d),
        log.child({ component: 'respond' }),
        cfg.respondIntervalMs,
      );
      this.responder = r;
      this.sync.onPolicies = (p) => r.setPolicies(p);
      this.sync.onLive = () => r.flush();
    }
    this.engine.addListener({
      applied: (_m, res) => {
        if (res.opCount > 0) this.metrics.applySeconds.observe(res.ms / 1000);
      },
      refused: (_m, res) => this.metrics.refusals.inc({ reason: res.reason }),
    });
    this.http = new HealthServer(
      () => this.health(),
      this.metrics,
      () => this.readyFlag,
    );
  }

  /** Opens, reconciles, attaches, serves and connects. Resolves once the kernel enforces. */
  static async start(cfg: AgentConfig, deps: AgentDeps): Promise<Agent> {
    const log = deps.logger;
    const t0 = performance.now();
    const dp = deps.openDatapath({
      pinDir: cfg.pinPath,
      ...(cfg.objDir !== undefined ? { objDir: cfg.objDir } : {}),
      capacity: {
        ...(cfg.capacityPrefixes !== undefined ? { prefixesPerTable: cfg.capacityPrefixes } : {}),
        ...(cfg.capacitySlots !== undefined ? { counterSlots: cfg.capacitySlots } : {}),
      },
      defaultAction: cfg.defaultAction,
      events: {
        enabled: cfg.events.enabled,
        ratePerSecond: cfg.events.ratePerSecond,
        burst: cfg.events.burst,
        nodeRatePerSecond: cfg.events.nodeRatePerSecond,
        nodeBurst: cfg.events.nodeBurst,
        snapLen: cfg.events.snapLen,
      },
      eventRingBytes: cfg.events.ringBytes,
      logger: log.child({ component: 'datapath' }),
    });
    let engine: Engine;
    try {
      engine = await Engine.open(dp, log);
    } catch (e) {
      dp.close();
      throw e;
    }
    const a = new Agent(cfg, log, dp, engine, deps.identity);
    a.loopDelay.enable();
    try {
      await a.init(t0);
    } catch (e) {
      await a.stop();
      throw e;
    }
    return a;
  }

  /** t0: performance.now() when the start began (the 'enforcing' log says how long it took). */
  private async init(t0: number): Promise<void> {
    const cfg = this.cfg;
    const sum = this.engine.loaded;
    this.log.info(
      {
        fresh: this.dp.createdFresh,
        revision: String(sum.meta.revision),
        storeId: sum.meta.storeId,
        journalRules: sum.journalRules,
        kernelEntries: sum.kernelEntries,
        expiredMeanwhile: sum.expired,
        defaultAction: this.dp.defaultAction,
        capacity: this.dp.capacity,
      },
      this.dp.createdFresh ? 'datapath created' : 'pinned state read back',
    );
    if (this.dp.defaultAction !== cfg.defaultAction) {
      this.log.warn(
        { pinned: this.dp.defaultAction, configured: cfg.defaultAction },
        'the pinned datapath keeps its default action; uninstall to change it',
      );
    }
    // Only the difference between the journal and the kernel is applied,
    // with the failsafe entries (resolved now) in the same plan.
    this.engine.requestReconcile();
    await this.failsafe.refresh();
    await this.engine.idle();
    if (this.engine.lastRefusal)
      this.log.error({ error: this.engine.lastError }, 'the pinned rules could not all be restored; the kernel keeps what it has');
    // Reading a large pinned state back leaves a lot of garbage: collect it now, not in the middle of a change.
    if (sum.journalRules + sum.kernelEntries > 100_000) releaseTransientMemory();
    this.attachAll();
    for (const a of this.dp.attachments()) {
      if (!cfg.interfaces.includes(a.ifname)) {
        this.log.warn({ ifname: a.ifname }, 'interface no longer configured: detaching');
        try {
          this.dp.detach(a.ifname);
        } catch (e) {
          this.log.error({ err: e, ifname: a.ifname }, 'detach failed');
        }
      }
    }
    if (cfg.httpAddr !== '') {
      this.httpPort = await this.http.listen(cfg.httpAddr);
      this.log.info({ httpPort: this.httpPort, addr: cfg.httpAddr }, 'serving /healthz and /metrics');
    }
    this.readyFlag = true;
    this.log.info(
      { ms: Math.round(performance.now() - t0), rulesInKernel: this.engine.rules.kernel.total, interfaces: [...this.attached.keys()] },
      'enforcing',
    );
    if (cfg.readyFile) {
      const tmp = `${cfg.readyFile}.tmp`;
      writeFileSync(
        tmp,
        `${JSON.stringify({
          pid: process.pid,
          httpPort: this.httpPort,
          nodeName: cfg.nodeName,
          instanceId: this.sync.instanceId,
          appliedRevision: String(this.engine.applied.revision),
        })}\n`,
      );
      renameSync(tmp, cfg.readyFile);
    }
    this.events?.start();
    this.responder?.start();
    this.sync.start();
    if (this.identity) {
      this.identity.onRenewed = () => this.sync.switchCredentials();
      this.identity.useChannel(() => this.sync.currentChannel());
    }
  }

  private attachAll(): void {
    let missing = false;
    for (const ifname of this.cfg.interfaces) {
      if (this.attached.has(ifname)) continue;
      try {
        const a = this.dp.attach(ifname, { xdpMode: this.cfg.xdpMode, replaceForeign: this.cfg.replaceForeignXdp });
        this.attached.set(ifname, a);
        this.attachErrors.delete(ifname);
        if (a.xdpMode === 'generic' && this.cfg.xdpMode === 'auto')
          this.log.warn({ ifname }, 'XDP runs in generic (skb) mode on this interface: slower');
        this.log.info({ ifname, ifindex: a.ifindex, xdp: a.xdpMode, egress: a.egressMode }, 'attached');
      } catch (e) {
        missing = true;
        const msg = (e as Error).message;
        if (this.attachErrors.get(ifname) !== msg) this.log.error({ ifname, error: msg }, 'attach failed; retrying');
        this.attachErrors.set(ifname, msg);
      }
    }
    if (missing && !this.stopped) {
      this.reattachTimer = setTimeout(() => {
        this.reattachTimer = undefined;
        this.attachAll();
        this.sync.sendStatus();
      }, REATTACH_MS);
    }
  }

  private interfaces(): InterfaceStatus[] {
    const out: InterfaceStatus[] = [];
    for (const ifname of this.cfg.interfaces) {
      const a = this.attached.get(ifname);
      out.push(interfaceStatus(a ?? { ifname, ifindex: 0, xdpMode: 'none', egressMode: 'none' }));
    }
    return out;
  }

  private fillRatio(): number {
    let worst = 0;
    const cap = this.dp.capacity.prefixesPerTable;
    const count = this.engine.rules.kernel.count;
    for (const t of TABLES) worst = Math.max(worst, count[t]! / cap);
    return worst;
  }

  private currentError(): string {
    if (this.engine.lastError !== '') return this.engine.lastError;
    const [first] = this.attachErrors.values();
    return first ?? '';
  }

  /** The maps' kernel memory, read at most once per MEMORY_TTL_MS. */
  private kernelMemory(): KernelMemory {
    const now = Date.now();
    if (!this.memory || now - this.memory.at >= MEMORY_TTL_MS) this.memory = { at: now, value: this.dp.memory() };
    return this.memory.value;
  }

  agentStatus(): AgentStatus {
    const mem = this.kernelMemory();
    return {
      interfaces: this.interfaces(),
      rulesInKernel: BigInt(this.engine.rules.kernel.total),
      mapFillRatio: this.fillRatio(),
      lastError: this.currentError(),
      appliedRevision: this.engine.applied.revision,
      failsafe: this.failsafe.entries.map((e) => ({ cidr: e.cidr, source: e.source })),
      kernelMemoryBytes: BigInt(mem.bytes),
      mapResizeFailures: resizeFailures(mem),
    };
  }

  health(): AgentHealth {
    const t = this.engine.rules;
    const mem = this.kernelMemory();
    const s = this.sync.stats;
    const applies = this.engine.applyStats;
    return {
      nodeName: this.cfg.nodeName,
      syncState: this.sync.state,
      connected: this.sync.connected,
      controlPlane: s.controlPlane,
      appliedRevision: this.engine.applied.revision,
      desiredRevision: this.engine.desired.revision,
      storeId: this.engine.applied.storeId,
      rulesDesired: t.desiredCount,
      rulesJournaled: t.journaledCount,
      rulesInKernel: t.kernel.total,
      tables: TABLES.map((tb) => ({
        table: tableName(tb),
        entries: t.kernel.count[tb]!,
        capacity: this.dp.capacity.prefixesPerTable,
        size: mem.tables[tb]?.size ?? 0,
        kernelBytes: mem.tables[tb]?.bytes ?? 0,
      })),
      kernelMemory: memoryHealth(mem),
      mapFillRatio: this.fillRatio(),
      counterSlotsInUse: this.engine.slots.inUse,
      counterSlots: this.dp.capacity.counterSlots,
      lastError: this.currentError(),
      interfaces: this.interfaces().map((i) => ({
        name: i.name,
        ifindex: i.ifindex,
        xdpMode: String(this.attached.get(i.name)?.xdpMode ?? 'none'),
        egressMode: String(this.attached.get(i.name)?.egressMode ?? 'none'),
      })),
      lastSyncMode: s.lastSyncMode,
      lastSyncMs: s.lastSyncMs,
      lastPropagationMs: s.lastPropagationMs,
      snapshots: s.snapshots,
      resumes: s.resumes,
      reconnects: s.connects,
      tls: this.identity !== undefined,
      certificateExpires: this.identity ? new Date(this.identity.notAfterMs).toISOString() : '',
      certificateRenewals: this.identity?.renewals ?? 0,
      streamSwitches: s.credentialSwitches,
      acks: s.acks,
      nacks: s.nacks,
      failsafe: this.failsafe.entries,
      respond: this.responder ? { ...this.responder.stats } : null,
      expiredLocally: this.engine.stats.expired,
      pendingExpiries: this.engine.pendingExpiries,
      lastApplyMs: applies.lastApplyMs,
      applies: applies.applies,
      repairs: applies.repairs,
      counterReports: this.counters.stats.reports,
      counterReadMs: Math.round(this.counters.stats.lastReadMs * 10) / 10,
      events: this.eventHealth(),
      eventLoopDelayMs: this.takeLoopDelay(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      memoryMb: Object.fromEntries(Object.entries(process.memoryUsage()).map(([k, v]) => [k, Math.round(v / 1e5) / 10])),
      pid: process.pid,
    };
  }

  private eventHealth(): EventHealth {
    const p = this.events;
    if (!p) return { enabled: false, read: 0, queued: 0, queueDropped: 0, orphaned: 0, sent: 0, batches: 0, kernelLost: 0 };
    const q = p.queue.stats;
    return {
      enabled: true,
      read: q.read,
      queued: p.queue.length,
      queueDropped: q.dropped,
      orphaned: q.orphaned,
      sent: p.stats.sent,
      batches: p.stats.batches,
      kernelLost: Number(p.stats.kernelLost),
    };
  }

  private takeLoopDelay(): { p99: number; max: number } {
    const h = this.loopDelay;
    const out = { p99: Math.round(h.percentile(99) / 1e5) / 10, max: Math.round(h.max / 1e5) / 10 };
    h.reset();
    return out;
  }

  /** Graceful stop: the kernel keeps enforcing what it holds. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.reattachTimer) clearTimeout(this.reattachTimer);
    this.identity?.stop();
    this.responder?.stop();
    await this.sync.stop();
    // Let a running apply finish so the journal and meta stay in step, and a swap it made due (its load) settle.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.engine.idle().then(() => this.dp.settled()), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
    clearTimeout(timer);
    this.engine.stop();
    await this.events?.stop();
    this.loopDelay.disable();
    await this.http.close();
    this.dp.close();
    this.log.info('stopped; enforcement stays in place');
  }
}

/** The failed resizes as AgentStatus reports them (unset when none failed). */
function resizeFailures(m: KernelMemory): MapResizeFailures | undefined {
  const f = m.swapFailures;
  if (f.grow === 0 && f.shrink === 0) return undefined;
  return {
    grow: BigInt(f.grow),
    shrink: BigInt(f.shrink),
    lastReason: m.lastSwapFailure,
    lastTime: m.lastSwapFailureAt > 0 ? new Date(m.lastSwapFailureAt) : undefined,
  };
}

function memoryHealth(m: KernelMemory): KernelMemoryHealth {
  return {
    bytes: m.bytes,
    perCpuBytes: m.perCpuBytes,
    counterSlots: m.counterSlots,
    counterBytes: m.counterBytes,
    journalRules: m.journalRules,
    journalBytes: m.journalBytes,
    resizes: m.swaps,
    resizeMaxMs: m.swapMaxMs,
    resizeFailures: m.swapFailures,
    lastResizeFailure: m.lastSwapFailure,
    lastResizeFailureTime: m.lastSwapFailureAt > 0 ? new Date(m.lastSwapFailureAt).toISOString() : '',
    maps: m.maps,
  };
}
