// Issue 18 part 5, "bounded under attack", at the control plane with a
// scripted agent on a real Sync stream and real Postgres: the bans that are
// due together are written as one group - one transaction, one revision -
// with each ban's own semantics kept (a ban in force is extended, an allowed
// source exempted, the others created, each audited as policy:NAME); a
// group whose transaction fails writes nothing and stays queued until it
// can be written; the /24 (IPv6 /64) merge of a policy's bans, never over an
// allowed address, reaching the agent; merge_threshold validated.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import postgres from 'postgres';
import { type DetectionPolicy, PolicyProtocol, SourceGrouping } from '../../proto/gen/fleetwall/v1/policy.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { formatPrefix } from '../../common/src/cidr.js';
import { CreateRuleRequest } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { detectionPolicy, detectionReport, type PolicyOverrides } from '../support/policy-fixtures.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { SyncClient } from '../support/scripted-agent.js';
import { eventually } from '../support/eventually.js';

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

function policy(p: PolicyOverrides): DetectionPolicy {
  return detectionPolicy({
    match: { protocol: PolicyProtocol.POLICY_PROTOCOL_UDP, ports: [], tcpSynOnly: false },
    maxBansPerSecond: 1000,
    ...p,
  });
}

interface Rig {
  readonly cp: TestControlPlane;
  readonly sql: postgres.Sql;
  readonly agent: SyncClient;
}

async function withRig(fn: (r: Rig) => Promise<void>): Promise<void> {
  const url = await pg.newDatabase();
  const cp = await startTestControlPlane(url);
  const sql = postgres(url, { max: 2, onnotice: () => {}, types: { bigint: postgres.BigInt } });
  const agent = new SyncClient(cp.target, { nodeName: 'node-1' }).connect();
  try {
    await agent.waitInSync();
    await fn({ cp, sql, agent });
  } finally {
    agent.close();
    await sql.end();
    await cp.stop();
  }
}

async function createPolicy(r: Rig, p: DetectionPolicy): Promise<bigint> {
  await unaryCall(r.cp.clients.policies, 'createPolicy', { policy: p });
  await r.agent.waitFor((c) => c.policySets.at(-1)?.some((x) => x.name === p.name) ?? false, `the agent gets ${p.name}`);
  return r.agent.policySets.at(-1)!.find((x) => x.name === p.name)!.id;
}

const bans = async (r: Rig, name = '') => (await unaryCall(r.cp.clients.policies, 'listBans', { policy: name })).bans;

async function untilBans(r: Rig, pred: (l: Awaited<ReturnType<typeof bans>>) => boolean, what: string, name = '') {
  return eventually(
    async () => {
      const l = await bans(r, name);
      if (!pred(l)) throw new Error(`not yet: ${l.map((b) => b.source).join(' ')}`);
      return l;
    },
    what,
    30_000,
  );
}

/** The agent's rules as CIDRs. */
const agentCidrs = (a: SyncClient) =>
  [...a.rules.values()].map((x) => formatPrefix({ family: x.address.length === 4 ? 4 : 6, bytes: x.address, len: x.prefixLength })).sort();

test('bans that are due together are one transaction and one revision; each keeps its own outcome (extended, exempted, created), audited as policy:NAME', () =>
  withRig(async (r) => {
    const id = await createPolicy(r, policy({ name: 'bulk' }));
    await unaryCall(
      r.cp.clients.rules,
      'createRule',
      CreateRuleRequest.fromPartial({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_ALLOW } }),
    );
    // A ban in force before the flood.
    r.agent.send({ msg: { $case: 'detection', value: detectionReport(id, 'bulk', '198.18.0.1') } });
    const [first] = await untilBans(r, (l) => l.length === 1, 'the first ban');
    const firstRule = (await unaryCall(r.cp.clients.rules, 'getRule', { id: first!.ruleId })).rule!;
    const [before] = await r.sql<{ n: bigint }[]>`select count(*)::bigint as n from revisions where kind = 'ban'`;
    assert.equal(before!.n, 1n, 'one ban, one revision');

    // 100 new sources, the banned one again and an allowed one, all at once.
    await new Promise((res) => setTimeout(res, 1100));
    const sources = Array.from({ length: 100 }, (_, i) => `198.18.${1 + (i >> 8)}.${i & 255}`);
    for (const s of [...sources, '198.18.0.1', '192.0.2.9'])
      r.agent.send({ msg: { $case: 'detection', value: detectionReport(id, 'bulk', s) } });
    const all = await untilBans(r, (l) => l.length === 101, 'all 101 banned');
    await eventually(async () => {
      const g = (await unaryCall(r.cp.clients.policies, 'getPolicy', { name: 'bulk' })).policy!;
      assert.equal(g.exempted, 1n, 'the allowed source exempted');
    }, 'the exemption counted');
    assert.ok(!all.some((b) => b.source === '192.0.2.9/32'), 'no ban of the allowed source');
    const again = all.find((b) => b.source === '198.18.0.1/32')!;
    assert.equal(again.ruleId, first!.ruleId, 'the ban in force extended: the same rule');
    const extended = (await unaryCall(r.cp.clients.rules, 'getRule', { id: first!.ruleId })).rule!;
    assert.ok(extended.expireTime! > firstRule.expireTime!, 'its expiry moved later');

    const revs = await r.sql<{ revision: bigint; change_count: number | bigint; actor: string }[]>`
      select revision, change_count, actor from revisions where kind = 'ban' order by revision`;
    // 101 rule writes (100 creates, 1 extension): one revision each before grouping; now one per group
    // (the detections arrive over one stream within a few milliseconds: one group, a few on a loaded
    // machine, where they straddle the writer's 100 ms ticks; 4 were seen in CI at load. Ungrouped: 101).
    assert.ok(revs.length - 1 <= 10, `101 ban writes in ${revs.length - 1} revisions`);
    assert.equal(
      revs.slice(1).reduce((n, x) => n + Number(x.change_count), 0),
      101,
      'every write counted in its revision',
    );
    assert.ok(revs.every((x) => x.actor === 'policy:bulk'));
    const audit = await r.sql<{ actor: string; action: string; n: bigint }[]>`
      select actor, action, count(*)::bigint as n from audit_log where actor like 'policy:%' group by actor, action order by action`;
    assert.deepEqual(
      audit.map((a) => [a.actor, a.action, a.n]),
      [
        ['policy:bulk', 'rule.create', 101n],
        ['policy:bulk', 'rule.update', 1n],
      ],
    );
    const rules = await r.sql<{ n: bigint }[]>`select count(*)::bigint as n from rules where created_by = 'policy:bulk'`;
    assert.equal(rules[0]!.n, 101n, 'one rule per source, no duplicate');
    await r.agent.waitFor((c) => c.rules.size === 102, 'the agent has the 101 bans and the allow');
  }));

test('a group whose transaction fails writes nothing and stays queued; it is written once the store takes it', () =>
  withRig(async (r) => {
    const id = await createPolicy(r, policy({ name: 'retry' }));
    // Every insert into bans fails (a DB error in the middle of the group's transaction, after its rules are inserted).
    await r.sql.unsafe(`create function fail_bans() returns trigger language plpgsql as $$ begin raise exception 'bans refused by the test'; end $$;
      create trigger fail_bans before insert on bans for each row execute function fail_bans()`);
    for (let i = 1; i <= 10; i++) r.agent.send({ msg: { $case: 'detection', value: detectionReport(id, 'retry', `198.51.100.${i}`) } });
    await eventually(async () => {
      const m = await fetch(`http://127.0.0.1:${r.cp.httpPort}/metrics`).then((x) => x.text());
      assert.match(m, /fleetwall_bans_deferred\{[^}]*\} 10|fleetwall_bans_deferred 10/, 'the 10 wait');
    }, 'the detections queued');
    await new Promise((res) => setTimeout(res, 500));
    const [rules] = await r.sql<{ n: bigint }[]>`select count(*)::bigint as n from rules where created_by = 'policy:retry'`;
    assert.equal(rules!.n, 0n, 'no rule half-written');
    const [revs] = await r.sql<{ n: bigint }[]>`select count(*)::bigint as n from revisions where kind = 'ban'`;
    assert.equal(revs!.n, 0n, 'no revision');
    await r.sql.unsafe('drop trigger fail_bans on bans');
    const l = await untilBans(r, (x) => x.length === 10, 'all 10 banned after the store recovers');
    assert.deepEqual(
      l.map((b) => b.offences),
      Array(10).fill(1),
      'each once',
    );
  }));

test('merge_threshold: N bans of one /24 become one /24 ban (the agent gets it, the /32s go); later ones extend it; never over an allowed address; IPv6 merges into the /64', () =>
  withRig(async (r) => {
    const id = await createPolicy(r, policy({ name: 'merge', mergeThreshold: 3 }));
    await unaryCall(
      r.cp.clients.rules,
      'createRule',
      CreateRuleRequest.fromPartial({ rule: { cidr: '203.0.113.77/32', action: Action.ACTION_ALLOW } }),
    );
    const send = (s: string) => r.agent.send({ msg: { $case: 'detection', value: detectionReport(id, 'merge', s) } });
    send('198.51.100.1');
    send('198.51.100.2');
    await untilBans(r, (l) => l.length === 2, 'two /32 bans');
    send('198.51.100.3');
    const [net] = await untilBans(r, (l) => l.length === 1 && l[0]!.source === '198.51.100.0/24', 'the /24 ban');
    const rule = (await unaryCall(r.cp.clients.rules, 'getRule', { id: net!.ruleId })).rule!;
    assert.equal(rule.cidr, '198.51.100.0/24');
    assert.equal(rule.action, Action.ACTION_DENY);
    assert.equal(rule.createdBy, 'policy:merge');
    const ttl = rule.expireTime!.getTime() - Date.now();
    assert.ok(ttl > 50_000, `expires no sooner than its members (${ttl}ms)`);
    await r.agent.waitFor(
      (c) => agentCidrs(c).join(' ') === '198.51.100.0/24 203.0.113.77/32',
      'the agent holds the /24 instead of the /32s',
    );
    const audit = await r.sql<{ action: string; n: bigint }[]>`
      select action, count(*)::bigint as n from audit_log where actor = 'policy:merge' group by action order by action`;
    assert.deepEqual(
      audit.map((a) => [a.action, a.n]),
      [
        ['rule.create', 4n],
        ['rule.delete', 3n],
      ],
      'three /32s created and deleted, the /24 created, all by the policy',
    );

    // Another source of the /24: the network's ban is extended, no new /32.
    await new Promise((res) => setTimeout(res, 1100));
    send('198.51.100.4');
    await eventually(async () => {
      const x = (await unaryCall(r.cp.clients.rules, 'getRule', { id: net!.ruleId })).rule!;
      assert.ok(x.expireTime! > rule.expireTime!, 'the /24 ban extended');
    }, 'the extension');
    assert.deepEqual(
      (await bans(r)).map((b) => b.source),
      ['198.51.100.0/24'],
    );

    // A /24 holding an allowed address is never merged.
    for (const s of ['203.0.113.1', '203.0.113.2', '203.0.113.3', '203.0.113.4']) send(s);
    await untilBans(r, (l) => l.filter((b) => b.source.startsWith('203.0.113.')).length === 4, 'four /32 bans, no merge');
    assert.ok(!(await bans(r)).some((b) => b.source === '203.0.113.0/24'));

    // IPv6: the /64.
    for (const s of ['2001:db8:5:6::1', '2001:db8:5:6::2', '2001:db8:5:6::3']) send(s);
    await untilBans(r, (l) => l.some((b) => b.source === '2001:db8:5:6::/64'), 'the /64 ban');
    assert.ok(!(await bans(r)).some((b) => b.source.startsWith('2001:db8:5:6::') && b.source.endsWith('/128')), 'no /128 left');
  }));

test('merge_threshold is validated: 1 or over 256, or with network grouping, is INVALID_POLICY naming policy.merge_threshold; over JSON too', () =>
  withRig(async (r) => {
    for (const p of [
      { mergeThreshold: 1 },
      { mergeThreshold: 257 },
      { mergeThreshold: 4, grouping: SourceGrouping.SOURCE_GROUPING_NETWORK },
    ]) {
      const err = await callError(unaryCall(r.cp.clients.policies, 'createPolicy', { policy: policy({ name: 'bad', ...p }) }));
      assert.equal(err.code, 3);
      assert.equal(errorInfoOf(err)?.metadata.field, 'policy.merge_threshold', JSON.stringify(p));
    }
    const res = await fetch(`http://127.0.0.1:${r.cp.httpPort}/v1/policies`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ policy: { name: 'json', threshold: { packetsPerSecond: '10' }, mergeThreshold: 16 } }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    const got = (await unaryCall(r.cp.clients.policies, 'getPolicy', { name: 'json' })).policy!;
    assert.equal(got.mergeThreshold, 16);
    assert.deepEqual(
      (await unaryCall(r.cp.clients.policies, 'listPolicies', {})).policies.map((p) => p.name),
      ['json'],
      'only the good one stored',
    );
  }));
