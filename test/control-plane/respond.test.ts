// Detection policies at the control plane (issue 18), with a scripted agent
// on a real Sync stream and real Postgres: policies reach the agents they
// select (PolicySet after InSync and on every change); a detection becomes
// one fleet-wide deny created by policy:NAME (audited as such), a repeated
// detection extends that one ban, a repeat offence after it is gone gets the
// escalated duration; a source an allow rule covers or the lockout guard
// protects is exempted; monitor mode bans nothing; bans per policy per
// second are capped and the rest wait (all banned in the end); bad policies
// are INVALID_POLICY naming the field and nothing is stored.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { PolicyProtocol } from '../../proto/gen/fleetwall/v1/policy.js';
import { Action, Mode } from '../../proto/gen/fleetwall/v1/rule.js';
import type { DetectionPolicy } from '../../proto/gen/fleetwall/v1/policy.js';
import { CreateRuleRequest, ListRulesRequest } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { SyncClient } from '../support/scripted-agent.js';
import { eventually } from '../support/eventually.js';
import { detectionPolicy, detectionReport, type PolicyOverrides, sec } from '../support/policy-fixtures.js';

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

function policy(p: PolicyOverrides): DetectionPolicy {
  return detectionPolicy(p);
}

async function withCp(fn: (cp: TestControlPlane) => Promise<void>): Promise<void> {
  const cp = await startTestControlPlane(await pg.newDatabase());
  try {
    await fn(cp);
  } finally {
    await cp.stop();
  }
}

/** Polls until `f` gives a value (undefined: not yet). */
function until<T>(f: () => Promise<T | undefined>, what: string, timeoutMs?: number): Promise<T> {
  return eventually(
    async () => {
      const v = await f();
      if (v === undefined) throw new Error('not yet');
      return v;
    },
    what,
    timeoutMs,
  );
}

const bans = async (cp: TestControlPlane, name = '') => (await unaryCall(cp.clients.policies, 'listBans', { policy: name })).bans;

test('bad policies are INVALID_ARGUMENT naming the field (INVALID_POLICY; an unknown enum value the edge check INVALID_ENUM), and nothing is stored', () =>
  withCp(async (cp) => {
    const cases: [string, Partial<DetectionPolicy>, string, string?][] = [
      ['threshold 0', { threshold: { packetsPerSecond: 0n, bytesPerSecond: 0n, window: sec(1) } }, 'policy.threshold'],
      [
        'unknown protocol',
        { match: { direction: 1, protocol: 9 as PolicyProtocol, ports: [], tcpSynOnly: false } },
        'policy.match.protocol',
        // Refused by the edge check every request passes (control-plane/src/edge/message-check.ts), before the policy's own.
        'INVALID_ENUM',
      ],
      [
        'port 70000',
        { match: { direction: 1, protocol: PolicyProtocol.POLICY_PROTOCOL_TCP, ports: [{ first: 70000, last: 0 }], tcpSynOnly: false } },
        'policy.match.ports[0]',
      ],
      [
        'a ban shorter than the window',
        {
          response: { duration: sec(1), escalationFactor: 2, maxDuration: sec(60), jitter: 0 },
          threshold: { packetsPerSecond: 5n, bytesPerSecond: 0n, window: sec(10) },
        },
        'policy.response.duration',
      ],
      ['bad name', { name: 'No Spaces' }, 'policy.name'],
    ];
    for (const [what, p, field, reason = 'INVALID_POLICY'] of cases) {
      const err = await callError(unaryCall(cp.clients.policies, 'createPolicy', { policy: policy({ name: 'bad', ...p }) }));
      assert.equal(err.code, 3, `${what}: INVALID_ARGUMENT`);
      const info = errorInfoOf(err);
      assert.equal(info?.reason, reason, what);
      assert.equal(info?.metadata.field, field, `${what} names ${field}`);
      assert.match(err.details, new RegExp(field.replace(/[[\].]/g, '\\$&')), `${what}: the message names the field`);
    }
    assert.deepEqual((await unaryCall(cp.clients.policies, 'listPolicies', {})).policies, [], 'nothing stored');
  }));

test('a detection becomes one fleet-wide ban by policy:NAME; a repeat extends it; a repeat offence escalates; allowed and protected sources are exempted; monitor bans nothing', () =>
  withCp(async (cp) => {
    const a = new SyncClient(cp.target, { nodeName: 'node-1', labels: { role: 'edge' } }).connect();
    const b = new SyncClient(cp.target, { nodeName: 'node-2', labels: { role: 'core' } }).connect();
    try {
      await a.waitInSync();
      await b.waitInSync();
      const created = await unaryCall(cp.clients.policies, 'createPolicy', {
        policy: policy({ name: 'ssh-syn', nodeSelector: { role: 'edge' } }),
      });
      const p = created.policy!;
      assert.ok(p.revision > 0n, 'a revision');
      await a.waitFor((c) => c.policySets.at(-1)?.length === 1, 'node-1 gets the policy');
      const got = a.policySets.at(-1)![0]!;
      assert.equal(got.name, 'ssh-syn');
      assert.equal(got.threshold?.packetsPerSecond, 20n);
      // node-2 is not selected: it got the empty set (after InSync) and nothing since.
      assert.deepEqual(
        b.policySets.map((s) => s.length),
        [0],
      );
      const id = got.id;

      // First detection: a deny with the policy's duration, created by the policy.
      a.send({ msg: { $case: 'detection', value: detectionReport(id, 'ssh-syn', '198.51.100.7') } });
      const [ban] = await until(async () => {
        const l = await bans(cp);
        return l.length === 1 ? l : undefined;
      }, 'the ban');
      assert.equal(ban!.source, '198.51.100.7/32');
      assert.equal(ban!.node, 'node-1');
      assert.equal(ban!.offences, 1);
      const rule = (await unaryCall(cp.clients.rules, 'getRule', { id: ban!.ruleId })).rule!;
      assert.equal(rule.action, Action.ACTION_DENY);
      assert.equal(rule.createdBy, 'policy:ssh-syn');
      assert.match(rule.comment, /policy ssh-syn: detected on node node-1, 100 pkt\/s/);
      const ttl = rule.expireTime!.getTime() - rule.createTime!.getTime();
      assert.ok(ttl >= 59_000 && ttl <= 61_000, `first offence: 60s (${ttl}ms)`);
      // Both nodes get the deny (fleet scope).
      await b.waitFor((c) => c.rules.has(rule.id), 'node-2 gets the ban');
      const audit = await unaryCall(cp.clients.audit, 'listAuditEvents', {
        pageSize: 10,
        pageToken: '',
        actor: '',
        ruleId: rule.id,
        action: '',
      });
      assert.deepEqual(
        audit.events.map((e) => [e.actor, e.action]),
        [['policy:ssh-syn', 'rule.create']],
      );

      // A repeated detection (another node, later) extends that one ban: no second rule.
      await new Promise((r) => setTimeout(r, 1100));
      b.send({ msg: { $case: 'detection', value: detectionReport(id, 'ssh-syn', '198.51.100.7') } });
      await until(async () => {
        const l = await bans(cp);
        return l.length === 1 && l[0]!.node === 'node-2' ? l : undefined;
      }, 'the ban extended by node-2');
      const extended = (await unaryCall(cp.clients.rules, 'getRule', { id: ban!.ruleId })).rule!;
      assert.ok(extended.expireTime! > rule.expireTime!, 'expiry moved later');
      assert.equal(
        (await unaryCall(cp.clients.rules, 'listRules', ListRulesRequest.fromPartial({ pageSize: 100 }))).rules.length,
        1,
        'one rule',
      );

      // The ban is lifted (an operator deletes it); the next offence is the second: 120s.
      await unaryCall(cp.clients.rules, 'deleteRule', { id: ban!.ruleId });
      a.send({ msg: { $case: 'detection', value: detectionReport(id, 'ssh-syn', '198.51.100.7') } });
      const [again] = await until(async () => {
        const l = await bans(cp);
        return l.length === 1 && l[0]!.offences === 2 ? l : undefined;
      }, 'the second offence');
      const r2 = (await unaryCall(cp.clients.rules, 'getRule', { id: again!.ruleId })).rule!;
      const ttl2 = r2.expireTime!.getTime() - r2.createTime!.getTime();
      assert.ok(ttl2 >= 119_000 && ttl2 <= 121_000, `second offence: 60s x 2 (${ttl2}ms)`);

      // An allowed source and a protected one (loopback) are exempted, not banned.
      await unaryCall(
        cp.clients.rules,
        'createRule',
        CreateRuleRequest.fromPartial({ rule: { cidr: '203.0.113.0/24', action: Action.ACTION_ALLOW } }),
      );
      a.send({ msg: { $case: 'detection', value: detectionReport(id, 'ssh-syn', '203.0.113.9') } });
      a.send({ msg: { $case: 'detection', value: detectionReport(id, 'ssh-syn', '127.0.0.1') } });
      await until(async () => {
        const g = (await unaryCall(cp.clients.policies, 'getPolicy', { name: 'ssh-syn' })).policy!;
        return g.exempted === 2n ? g : undefined;
      }, 'two exemptions counted');
      assert.deepEqual(
        (await bans(cp)).map((x) => x.source),
        ['198.51.100.7/32'],
        'no ban for them',
      );

      // Monitor mode: counted, never banned.
      const m = (await unaryCall(cp.clients.policies, 'createPolicy', { policy: policy({ name: 'watch', mode: Mode.MODE_MONITOR }) }))
        .policy!;
      await a.waitFor((c) => c.policySets.at(-1)?.length === 2, 'node-1 gets both');
      const mid = a.policySets.at(-1)!.find((x) => x.name === 'watch')!.id;
      a.send({ msg: { $case: 'detection', value: detectionReport(mid, 'watch', '192.0.2.77', { monitor: true, bannedLocally: false }) } });
      await until(async () => {
        const g = (await unaryCall(cp.clients.policies, 'getPolicy', { name: 'watch' })).policy!;
        return g.detections === 1n ? g : undefined;
      }, 'the monitor detection counted');
      assert.equal(m.mode, Mode.MODE_MONITOR);
      assert.deepEqual(await bans(cp, 'watch'), [], 'monitor bans nothing');

      // Deleting a policy sends the smaller set.
      await unaryCall(cp.clients.policies, 'deletePolicy', { name: 'watch' });
      await a.waitFor((c) => c.policySets.at(-1)?.length === 1, 'node-1 gets the set without it');
      const metrics = await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`).then((r) => r.text());
      assert.match(metrics, /fleetwall_detections_total\{policy="ssh-syn"[^}]*\} 5/);
      assert.match(metrics, /fleetwall_bans_active\{[^}]*\} 1/);
    } finally {
      a.close();
      b.close();
    }
  }));

test('bans per policy per second are capped: the rest wait and are banned later, none lost', () =>
  withCp(async (cp) => {
    const a = new SyncClient(cp.target, { nodeName: 'node-1' }).connect();
    try {
      await a.waitInSync();
      await unaryCall(cp.clients.policies, 'createPolicy', { policy: policy({ name: 'capped', maxBansPerSecond: 5 }) });
      await a.waitFor((c) => c.policySets.at(-1)?.length === 1, 'the policy');
      const id = a.policySets.at(-1)![0]!.id;
      for (let i = 1; i <= 20; i++) a.send({ msg: { $case: 'detection', value: detectionReport(id, 'capped', `198.51.100.${i}`) } });
      const all = await until(
        async () => {
          const l = await bans(cp);
          return l.length === 20 ? l : undefined;
        },
        'all 20 banned',
        30_000,
      );
      const times = all.map((x) => x.firstTime!.getTime()).sort((x, y) => x - y);
      // 5 at once, then 5 a second: the last ~3 s after the first (never sooner, whatever the machine's speed).
      assert.ok(times.at(-1)! - times[0]! >= 2500, `spread over ${times.at(-1)! - times[0]!}ms`);
    } finally {
      a.close();
    }
  }));
