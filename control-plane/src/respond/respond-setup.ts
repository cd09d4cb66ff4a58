// Wires detection policies into one control-plane process (issue 18): the
// store, the fan-out of PolicySets to this process's Sync streams, the ban
// writer behind detections, the service, the metrics
// (fleetwall_detections_total{policy}, fleetwall_bans_active,
// fleetwall_bans_deferred, fleetwall_ban_outcomes_total{policy,outcome}),
// the events watchers see (each detection of a known policy and each ban
// outcome, to inspect/inspect-hub.ts), and a flush of the policies' counts
// every second. control-plane.ts calls setUpRespond once;
// sync/agent-session.ts calls the hooks.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { parseCidr } from '../../../common/src/cidr.js';
import type { Detection } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import { BAN_OUTCOMES, type BanOutcomeEvent } from '../inspect/inspect-event.js';
import type { LockoutGuard } from '../lockout/lockout-guard.js';
import type { CapacityGuard } from '../services/capacity-guard.js';
import { type BanEvent, BanWriter } from './ban-writer.js';
import { PolicyFanout, type PolicySession } from './policy-fanout.js';
import { PolicyService } from './policy-service.js';
import { PolicyStore } from './policy-store.js';

/** What a Sync stream calls (sync/agent-session.ts). */
export interface RespondSessionHooks {
  /** The stream is live (after InSync): send its node's policies. */
  attached(s: PolicySession): void;
  detection(node: string, d: Detection): void;
}

/** Where detections and ban outcomes become events (inspect/inspect-hub.ts). */
export interface RespondEvents {
  detection(node: string, d: Detection, policy: string, direction: Direction): void;
  ban(b: BanOutcomeEvent): void;
}

export interface Respond {
  readonly service: PolicyService;
  readonly hooks: RespondSessionHooks;
  readonly writer: BanWriter;
  stop(): Promise<void>;
}

const FLUSH_MS = 1_000;

export async function setUpRespond(deps: {
  /** Writes (policy changes, bans). */
  readonly sql: Sql;
  /** Reads (policies, bans, exemption checks): store/database.ts's read pool. */
  readonly readSql?: Sql;
  /** Refuses a new ban that would overfill a node's kernel table (services/capacity-guard.ts). */
  readonly capacity?: CapacityGuard;
  readonly sessions: () => Iterable<PolicySession>;
  readonly guard: LockoutGuard | undefined;
  readonly registry: Registry;
  readonly maxCommentLength: number;
  readonly logger: Logger;
  /** Detections and ban outcomes as events for watchers. */
  readonly events?: RespondEvents;
}): Promise<Respond> {
  const store = new PolicyStore(deps.sql, deps.readSql);
  const fanout = new PolicyFanout(deps.sql, store, deps.sessions, deps.logger);
  await fanout.start();
  const writer = new BanWriter(deps.sql, (id) => fanout.policy(id), deps.guard, deps.logger, deps.readSql, deps.capacity);
  writer.start();
  const detections = new Counter({
    name: 'fleetwall_detections_total',
    help: 'Detections agents reported, by policy (monitor mode included)',
    labelNames: ['policy'],
    registers: [deps.registry],
  });
  new Gauge({
    name: 'fleetwall_bans_active',
    help: 'Bans of detection policies in force (their deny rules exist)',
    registers: [deps.registry],
    async collect() {
      this.set(await store.activeBans());
    },
  });
  new Gauge({
    name: 'fleetwall_bans_deferred',
    help: 'Detected sources waiting for their policy to allow another ban this second (this process)',
    registers: [deps.registry],
    collect() {
      this.set(writer.queued);
    },
  });
  const outcomes = new Counter({
    name: 'fleetwall_ban_outcomes_total',
    help: 'What this process did with detections of enforcing policies, by policy and outcome (created, extended, exempted, covered, refused, merged)',
    labelNames: ['policy', 'outcome'],
    registers: [deps.registry],
  });
  writer.onEvent = (e: BanEvent) => {
    outcomes.inc({ policy: e.policy, outcome: e.outcome });
    const outcome = BAN_OUTCOMES[e.outcome];
    if (!deps.events || outcome === undefined) return;
    let source: ReturnType<typeof parseCidr>;
    try {
      source = parseCidr(e.source);
    } catch {
      return;
    }
    deps.events.ban({
      policy: e.policy,
      source,
      node: e.node,
      direction: fanout.policyNamed(e.policy)?.spec.direction ?? Direction.DIRECTION_INGRESS,
      outcome,
      reason: e.why ?? '',
      ruleId: e.ruleId,
      expireTime: e.expireTime,
      offences: e.offences ?? 0,
    });
  };
  const flush = setInterval(() => {
    const counts = new Map(writer.unflushed);
    writer.unflushed.clear();
    store.addCounts(counts).catch((err) => deps.logger.warn({ err }, 'recording policy counts failed'));
  }, FLUSH_MS);
  flush.unref();
  const hooks: RespondSessionHooks = {
    attached: (s) => fanout.push(s),
    detection: (node, d) => {
      // Labelled with the policy's own name (by id), never the agent's text: an agent cannot mint label values.
      const p = fanout.policy(d.policyId);
      if (p) {
        detections.inc({ policy: p.name });
        deps.events?.detection(node, d, p.name, p.spec.direction);
      }
      writer.detection(node, d);
    },
  };
  return {
    service: new PolicyService(store, () => fanout.reload(), deps.maxCommentLength),
    hooks,
    writer,
    async stop() {
      clearInterval(flush);
      writer.stop();
      await store.addCounts(writer.unflushed).catch(() => undefined);
      await fanout.stop();
    },
  };
}
