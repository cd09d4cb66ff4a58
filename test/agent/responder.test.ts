// The agent's responder (issue 18) on a fake PolicyCounter (the kernel's
// half is test/dataplane/policy.kernel.test.ts, the whole loop
// test/agent/respond.kernel.test.ts): kernel ids per policy version, local
// bans as agent-local denies in their own id range with the ban's expiry,
// monitor mode, the per-policy local ban rate under a spoofed flood of
// distinct sources, and the bounds (local ban rules, reports waiting for
// the control plane).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { formatPrefix } from '../../common/src/cidr.js';
import type { AgentPolicy, Detection } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { PolicyProtocol, SourceGrouping } from '../../proto/gen/fleetwall/v1/policy.js';
import { Direction, Mode } from '../../proto/gen/fleetwall/v1/rule.js';
import type { KernelPolicy, PolicyCounter, PolicyHit, PolicyHitRead } from '../../node-agent/src/datapath/policy-maps.js';
import { Responder } from '../../node-agent/src/respond/responder.js';
import { MAX_LOCAL_BANS, planBanRules } from '../../node-agent/src/respond/local-bans.js';
import { BAN_RULE_ID_BASE, LOCAL_RULE_ID_BASE } from '../../node-agent/src/reconcile/local-rules.js';
import type { RuleSpec } from '../../node-agent/src/reconcile/rule-flags.js';

class FakeCounter implements PolicyCounter {
  policies: KernelPolicy[] = [];
  hits: PolicyHit[] = [];
  writePolicies(p: readonly KernelPolicy[]): void {
    this.policies = [...p];
  }
  readPolicyHits(from: bigint): PolicyHitRead {
    const out = this.hits.filter((h) => h.seq >= from);
    return { hits: out, next: BigInt(this.hits.length), lost: 0 };
  }
  refreshMargins(): void {}
  policyStats() {
    return { hits: BigInt(this.hits.length), windowPackets: 0n, marginPackets: 0n, sketchBytes: 0 };
  }
  hit(policy: number, addr: number[]): void {
    this.hits.push({
      seq: BigInt(this.hits.length),
      policy,
      family: 4,
      addr: new Uint8Array(addr),
      packets: 100n,
      bytes: 6000n,
      elapsedNs: 500_000_000n,
      atNs: 0n,
    });
  }
}

class FakeEngine {
  rules: RuleSpec[] = [];
  async replaceLocalRules(compute: (c: readonly RuleSpec[]) => readonly RuleSpec[], owner?: string): Promise<void> {
    assert.equal(owner, 'ban');
    this.rules = [...compute(this.rules)];
  }
}

function agentPolicy(id: bigint, o: Partial<AgentPolicy> = {}): AgentPolicy {
  return {
    id,
    revision: 1n,
    name: `p${id}`,
    match: {
      direction: Direction.DIRECTION_INGRESS,
      protocol: PolicyProtocol.POLICY_PROTOCOL_UDP,
      ports: [{ first: 53, last: 0 }],
      tcpSynOnly: false,
    },
    threshold: { packetsPerSecond: 100n, bytesPerSecond: 0n, window: { seconds: 2n, nanos: 0 } },
    grouping: SourceGrouping.SOURCE_GROUPING_ADDRESS,
    mode: Mode.MODE_ENFORCE,
    banDuration: { seconds: 60n, nanos: 0 },
    maxBansPerSecond: 10,
    ...o,
  };
}

function rig(connected = true) {
  const counter = new FakeCounter();
  const engine = new FakeEngine();
  const sent: Detection[] = [];
  let now = 1_000_000;
  const r = new Responder(
    counter,
    engine,
    (d) => {
      if (connected) sent.push(d);
      return connected;
    },
    pino({ level: 'silent' }),
    25,
    () => now,
  );
  return { counter, engine, sent, r, tick: (ms: number) => (now += ms), now: () => now };
}

test('policies become the kernel form; a hit is banned locally at once (its own id range, the ban expiry) and reported', async () => {
  const { counter, engine, sent, r, now } = rig();
  r.setPolicies([agentPolicy(7n), agentPolicy(8n, { grouping: SourceGrouping.SOURCE_GROUPING_NETWORK, mode: Mode.MODE_MONITOR })]);
  assert.equal(counter.policies.length, 2);
  const [k7, k8] = counter.policies as [KernelPolicy, KernelPolicy];
  assert.deepEqual([k7.protocol, k7.ports, k7.windowNs, k7.limitPackets, k7.v4Len], ['udp', [[53, 53]], 2_000_000_000n, 200n, 32]);
  assert.equal(k8.v4Len, 24);
  counter.hit(k7.id, [198, 51, 100, 7]);
  counter.hit(k8.id, [203, 0, 113, 0]);
  await r.poll();
  assert.equal(engine.rules.length, 1, 'only the enforce policy bans');
  const ban = engine.rules[0]!;
  assert.equal(formatPrefix(ban.prefix), '198.51.100.7/32');
  assert.deepEqual([ban.action, ban.mode, ban.direction], ['deny', 'enforce', 'ingress']);
  assert.ok(ban.id >= BAN_RULE_ID_BASE && ban.id > LOCAL_RULE_ID_BASE, 'the ban range');
  assert.equal(ban.expireUnixMs, now() + 60_000);
  assert.deepEqual(
    sent.map((d) => [d.policyId, d.policy, d.prefixLength, d.monitor, d.bannedLocally, d.packetsPerSecond, d.kind]),
    [
      [7n, 'p7', 32, false, true, 50, 'detection'],
      [8n, 'p8', 24, true, false, 50, 'detection'],
    ],
  );
  // The same policy version keeps its kernel id; a new revision gets another (its counts restart).
  r.setPolicies([agentPolicy(7n), agentPolicy(8n, { revision: 2n })]);
  assert.equal(counter.policies[0]!.id, k7.id);
  assert.notEqual(counter.policies[1]!.id, k8.id);
  // A hit of the old version (read late) is not acted on.
  counter.hit(k8.id, [203, 0, 113, 0]);
  await r.poll();
  assert.equal(sent.length, 2);
});

test('a spoofed flood of distinct sources: local bans at most the policy rate, rules and waiting reports bounded', async () => {
  const { counter, engine, sent, r, tick } = rig(false);
  r.setPolicies([agentPolicy(1n, { maxBansPerSecond: 10 })]);
  const kid = counter.policies[0]!.id;
  // 3 s of polls at 25 ms, each with 500 new sources over the limit.
  let n = 0;
  for (let round = 0; round < 120; round++) {
    for (let i = 0; i < 500; i++, n++) counter.hit(kid, [10, (n >> 16) & 255, (n >> 8) & 255, n & 255]);
    await r.poll();
    tick(25);
  }
  assert.equal(r.stats.detections, 60_000);
  assert.ok(r.stats.localBans <= 10 + 3 * 10 + 1, `at most the burst plus 10/s for 3 s (${r.stats.localBans})`);
  assert.ok(r.stats.localBans >= 30, 'but it does ban');
  assert.ok(engine.rules.length <= MAX_LOCAL_BANS);
  assert.equal(sent.length, 0, 'no stream');
  assert.equal(r.stats.pendingReports, 10_000, 'reports wait, at most 10,000');
  assert.equal(r.stats.droppedReports, 50_000);
});

test('planBanRules: a ban of a banned group keeps its id and the later expiry; expired ones go; at most max', () => {
  const b = (last: number, exp: number) => ({
    family: 4 as const,
    addr: new Uint8Array([192, 0, 2, last]),
    len: 32,
    direction: 'ingress' as const,
    expireUnixMs: exp,
  });
  let rules = planBanRules([], [b(1, 100), b(2, 200)], 0);
  const id1 = rules[0]!.id;
  rules = planBanRules(rules, [b(1, 500), b(2, 150)], 50);
  assert.deepEqual(
    rules.map((x) => [x.id === id1, formatPrefix(x.prefix), x.expireUnixMs]),
    [
      [true, '192.0.2.1/32', 500],
      [false, '192.0.2.2/32', 200],
    ],
  );
  rules = planBanRules(rules, [b(3, 900)], 300);
  assert.deepEqual(
    rules.map((x) => formatPrefix(x.prefix)),
    ['192.0.2.1/32', '192.0.2.3/32'],
    'the expired one left',
  );
  rules = planBanRules(rules, [b(4, 1000), b(5, 400)], 300, 2);
  assert.deepEqual(rules.map((x) => formatPrefix(x.prefix)).sort(), ['192.0.2.3/32', '192.0.2.4/32'], 'the ones expiring first give way');
});
