// End-to-end rig: real Postgres, real control plane(s) on port 0, a real
// agent process enforcing on the veth of a network namespace, reaching the
// control plane through a Unix-socket link the test can cut.
//
// By default over mutual TLS, as in production (issue 15): the control plane
// runs with --tls and its own PKI, the agent enrolls with a join token
// (labels zone=test) and the CA pin, and Sync carries its node certificate;
// TLS runs end to end through the Unix-socket link (the agent checks the
// name "localhost" in the server certificate). `plaintext: true` keeps the
// loopback control plane without TLS.

import type { TestPostgres } from './postgres.js';
import type { ServiceError } from '@grpc/grpc-js';
import { startTestControlPlane, type TestClients, type TestControlPlane } from './control-plane.js';
import { withNetnsPair, type NetnsPair } from './netns.js';
import { rmSync } from 'node:fs';
import { CreateJoinTokenRequest, type CreateJoinTokenResponse } from '../../proto/gen/fleetwall/v1/enrollment_service.js';
import { tempDataDir } from './tls-control-plane.js';
import { AgentProcess, type AgentProcessOptions, UdsProxy } from './agent-process.js';
import { CreateRuleRequest, type CreateRuleResponse, type DeleteRuleResponse } from '../../proto/gen/fleetwall/v1/rule_service.js';
import type { GetNodeResponse } from '../../proto/gen/fleetwall/v1/node_service.js';
import type { GetCountersResponse } from '../../proto/gen/fleetwall/v1/counter_service.js';
import { Action, Direction, Mode, type Rule } from '../../proto/gen/fleetwall/v1/rule.js';
import type { Node } from '../../proto/gen/fleetwall/v1/node.js';

export interface E2E {
  bed: NetnsPair;
  dbUrl: string;
  cp: TestControlPlane;
  link: UdsProxy;
  agent: AgentProcess;
  /** Another control plane on the same database and, with TLS, the same CA (the caller stops it). */
  startControlPlane(overrides?: Parameters<typeof startTestControlPlane>[1]): Promise<TestControlPlane>;
}

export interface E2EOptions {
  readonly agentArgs?: string[];
  readonly cpOverrides?: Parameters<typeof startTestControlPlane>[1];
  /** A loopback control plane without TLS, an agent without a certificate (default: mutual TLS, enrolled). */
  readonly plaintext?: boolean;
  /** Labels of the node (the join token's; default zone=test). */
  readonly labels?: Record<string, string>;
  /** The agent's command prefix (AgentProcessOptions.wrap). */
  readonly agentWrap?: AgentProcessOptions['wrap'];
}

/** A join token for any node name, and the CA pin (EnrollmentService.CreateJoinToken, as the admin). */
export async function createJoinToken(
  cp: { readonly clients: Pick<TestClients, 'enrollment'> },
  o: { nodeName?: string; labels?: Record<string, string>; ttlSeconds?: number } = {},
): Promise<CreateJoinTokenResponse> {
  const req = CreateJoinTokenRequest.fromPartial({
    nodeName: o.nodeName ?? '',
    labels: o.labels ?? {},
    ...(o.ttlSeconds !== undefined ? { ttl: { seconds: BigInt(o.ttlSeconds), nanos: 0 } } : {}),
  });
  return call<CreateJoinTokenResponse>((cb) => cp.clients.enrollment.createJoinToken(req, cb));
}

/** Runs `fn` with a fresh database, control plane, bed and agent; tears all down. */
export async function withE2E(pg: TestPostgres, fn: (e: E2E) => Promise<void>, opts: E2EOptions = {}): Promise<void> {
  await withNetnsPair(async (bed) => {
    const dbUrl = await pg.newDatabase();
    const dataDir = opts.plaintext ? undefined : tempDataDir('e2e');
    const tlsOverrides = dataDir ? { tls: true, dataDir } : {};
    const startControlPlane = (o: Parameters<typeof startTestControlPlane>[1] = {}) =>
      startTestControlPlane(dbUrl, { pingIntervalMs: 1000, ...tlsOverrides, ...opts.cpOverrides, ...o });
    const cp = await startControlPlane();
    const link = await UdsProxy.start(cp.target);
    let agent: AgentProcess | undefined;
    try {
      const labels = opts.labels ?? { zone: 'test' };
      const join = dataDir ? await createJoinToken(cp, { labels }) : undefined;
      agent = await AgentProcess.start({
        bed,
        controlPlane: link.address,
        labels: Object.entries(labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(','),
        ...(join ? { enroll: { joinToken: join.token, caCertHash: join.caCertHash } } : {}),
        args: opts.agentArgs ?? [],
        ...(opts.agentWrap ? { wrap: opts.agentWrap } : {}),
      });
      await agent.waitHealth('first sync', (h) => h.syncState === 'in_sync');
      await fn({ bed, dbUrl, cp, link, agent, startControlPlane });
    } catch (e) {
      if (agent && e instanceof Error) e.message += `\n--- agent log (tail) ---\n${agent.tail(40)}`;
      throw e;
    } finally {
      await agent?.cleanup();
      await link.close();
      await cp.stop();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }
  });
}

export interface RuleOptions {
  action?: 'deny' | 'allow';
  direction?: 'ingress' | 'egress';
  mode?: 'enforce' | 'monitor';
  ttlSeconds?: number;
}

/** Promisifies one unary call: call(cb) -> Promise. */
function call<T>(f: (cb: (e: ServiceError | null, r: T) => void) => unknown): Promise<T> {
  return new Promise((resolve, reject) => f((e, r) => (e ? reject(e) : resolve(r))));
}

export async function createRule(cp: TestControlPlane, cidr: string, o: RuleOptions = {}): Promise<{ rule: Rule; revision: bigint }> {
  const req = CreateRuleRequest.fromPartial({
    rule: {
      cidr,
      action: o.action === 'allow' ? Action.ACTION_ALLOW : Action.ACTION_DENY,
      direction: o.direction === 'egress' ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS,
      mode: o.mode === 'monitor' ? Mode.MODE_MONITOR : Mode.MODE_ENFORCE,
    },
    ...(o.ttlSeconds !== undefined ? { ttl: { seconds: BigInt(o.ttlSeconds), nanos: 0 } } : {}),
  });
  const res = await call<CreateRuleResponse>((cb) => cp.clients.rules.createRule(req, cb));
  return { rule: res.rule!, revision: res.revision };
}

export async function deleteRule(cp: TestControlPlane, id: bigint): Promise<bigint> {
  const res = await call<DeleteRuleResponse>((cb) => cp.clients.rules.deleteRule({ id }, cb));
  return res.revision;
}

export async function getNode(cp: TestControlPlane, name: string): Promise<Node> {
  const res = await call<GetNodeResponse>((cb) => cp.clients.nodes.getNode({ name }, cb));
  return res.node!;
}

/** Packets the control plane counted for `ruleId` on `node`. */
export async function rulePackets(cp: TestControlPlane, node: string, ruleId: bigint): Promise<bigint> {
  const res = await call<GetCountersResponse>((cb) =>
    cp.clients.counters.getCounters({ query: { nodeName: node, ruleIds: [ruleId], topRules: 0 } }, cb),
  );
  const row = res.snapshot?.rules.find((r) => r.ruleId === ruleId);
  return row?.packets ?? 0n;
}

/** Drop packets the control plane counted on `node`'s interfaces, by direction. */
export async function interfaceDrops(cp: TestControlPlane, node: string): Promise<{ ingress: bigint; egress: bigint }> {
  const res = await call<GetCountersResponse>((cb) =>
    cp.clients.counters.getCounters({ query: { nodeName: node, ruleIds: [], topRules: 0 } }, cb),
  );
  const out = { ingress: 0n, egress: 0n };
  for (const n of res.snapshot?.nodes ?? []) {
    if (n.nodeName !== node) continue;
    for (const i of n.interfaces) {
      if (i.direction === Direction.DIRECTION_INGRESS) out.ingress += i.counters?.dropPackets ?? 0n;
      if (i.direction === Direction.DIRECTION_EGRESS) out.egress += i.counters?.dropPackets ?? 0n;
    }
  }
  return out;
}

export async function eventually<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let err: unknown;
  for (;;) {
    try {
      last = await fn();
      if (ok(last)) return last;
    } catch (e) {
      err = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what}; last value: ${JSON.stringify(last, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}${err ? `; last error: ${String(err)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
