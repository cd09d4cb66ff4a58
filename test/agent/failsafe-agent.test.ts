// Failsafe entries in a running agent (in process, fake datapath, scripted
// control plane): allows for --failsafe-cidrs in the kernel tables whatever
// the policy (deny rules covering them, a deny of 0.0.0.0/0, allowlist
// mode), reported in AgentStatus, never in counter reports, untouched by
// snapshots and deletes, journaled so a restart keeps them without a write.
// The same on the real kernel with a real control plane, for the control
// plane's own address: test/agent/lockout.kernel.test.ts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatPrefix, parseCidr } from '../../common/src/cidr.js';
import { LOCAL_RULE_ID_BASE } from '../../node-agent/src/reconcile/local-rules.js';
import { ScriptedControlPlane, wireRule } from '../support/scripted-control-plane.js';
import { crash, fakePinDir, startTestAgent, waitFor } from '../support/agent-harness.js';

const FAILSAFE = ['--failsafe-cidrs', '198.51.100.0/24,2001:db8:beef::/48'];

test('failsafe entries: allowed whatever the policy, reported in AgentStatus, never counted to the control plane, kept by snapshots and deletes', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const { agent, dp } = await startTestAgent(cp.address, fakePinDir('failsafe'), FAILSAFE);
  t.after(async () => {
    await agent.stop();
    cp.stop();
  });
  // In the kernel before any contact with the control plane.
  assert.deepEqual(
    dp
      .readEntries()
      .map((e) => `${e.direction} ${formatPrefix(e.prefix)} ${e.action}`)
      .sort(),
    [
      'egress 198.51.100.0/24 allow',
      'egress 2001:db8:beef::/48 allow',
      'ingress 198.51.100.0/24 allow',
      'ingress 2001:db8:beef::/48 allow',
    ],
  );
  const s = await cp.accept();
  await s.next('hello');
  s.startSnapshot(3n, 'st');
  s.chunk(
    3n,
    [
      wireRule(1, '198.51.100.7'),
      wireRule(2, '198.51.0.0/16'),
      wireRule(3, '0.0.0.0/0', { direction: 'egress' }),
      wireRule(4, '2001:db8::/32'),
    ],
    true,
  );
  assert.equal((await s.next('ack')).revision, 3n);
  assert.equal(dp.inject('veth-a', 'ingress', '198.51.100.7', 5), 'pass', 'a deny of the failsafe address itself');
  assert.equal(dp.inject('veth-a', 'ingress', '198.51.1.1', 3), 'drop', 'the broader deny still drops the rest');
  assert.equal(dp.inject('veth-a', 'egress', '198.51.100.9'), 'pass', 'a deny of 0.0.0.0/0 egress');
  assert.equal(dp.inject('veth-a', 'egress', '203.0.113.1'), 'drop');
  assert.equal(dp.inject('veth-a', 'ingress', '2001:db8:beef::1'), 'pass');
  assert.equal(dp.inject('veth-a', 'ingress', '2001:db8:1::1'), 'drop');
  await waitFor('the failsafe entries in AgentStatus', () => s.pending('status').some((x) => x.failsafe.length === 2));
  assert.deepEqual(s.pending('status').find((x) => x.failsafe.length === 2)!.failsafe, [
    { cidr: '198.51.100.0/24', source: '--failsafe-cidrs' },
    { cidr: '2001:db8:beef::/48', source: '--failsafe-cidrs' },
  ]);
  // Counter reports carry the control plane's rules only (the failsafe slot counted 6 packets).
  await waitFor('rule 2 reported', () => s.pending('counterReport').some((r) => r.rules.some((x) => x.ruleId === 2n && x.packets === 3n)));
  const reported = s.pending('counterReport').flatMap((r) => r.rules.map((x) => x.ruleId));
  assert.ok(reported.length > 0 && reported.every((id) => id < LOCAL_RULE_ID_BASE), `reported ids: ${reported.join(',')}`);
  const localIds = agent.engine.localRules().map((r) => r.id);
  assert.equal(localIds.length, 4);
  // A delete of a local id and a new snapshot without them change nothing for them.
  s.delta(4n, [], [LOCAL_RULE_ID_BASE, LOCAL_RULE_ID_BASE + 1n]);
  assert.equal((await s.next('ack')).revision, 4n);
  s.fail();
  const s2 = await cp.accept();
  await s2.next('hello');
  s2.startSnapshot(5n, 'st2');
  s2.chunk(5n, [wireRule(2, '198.51.0.0/16')], true);
  assert.equal((await s2.next('ack')).revision, 5n);
  assert.deepEqual(
    agent.engine.localRules().map((r) => r.id),
    localIds,
  );
  assert.equal(dp.inject('veth-a', 'ingress', '198.51.100.7'), 'pass');
  // A rule in the reserved range from the wire: NACKed, the failsafe entry stays.
  s2.delta(6n, [wireRule(LOCAL_RULE_ID_BASE, '198.51.100.0/24')]);
  const nack = await s2.next('nack');
  assert.match(nack.status!.message, /reserved range/);
  assert.equal(dp.inject('veth-a', 'ingress', '198.51.100.7'), 'pass');
});

test('failsafe entries in allowlist mode (--default-action drop): the only traffic that passes without an allow rule', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const { agent, dp } = await startTestAgent(cp.address, fakePinDir('failsafe-drop'), [...FAILSAFE, '--default-action', 'drop']);
  t.after(async () => {
    await agent.stop();
    cp.stop();
  });
  assert.equal(dp.inject('veth-a', 'ingress', '198.51.100.7'), 'pass');
  assert.equal(dp.inject('veth-a', 'egress', '198.51.100.7'), 'pass');
  assert.equal(dp.inject('veth-a', 'ingress', '203.0.113.1'), 'drop', 'unmatched traffic takes the drop default');
  const s = await cp.accept();
  await s.next('hello');
  s.startSnapshot(1n, 'st');
  s.chunk(1n, [wireRule(1, '203.0.113.0/24', { action: 'allow' })], true);
  assert.equal((await s.next('ack')).revision, 1n);
  assert.equal(dp.inject('veth-a', 'ingress', '203.0.113.1'), 'pass');
  assert.equal(dp.inject('veth-a', 'ingress', '192.0.2.1'), 'drop');
});

test('restart: the failsafe entries are journaled; the restarted agent keeps their ids and writes nothing', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const pin = fakePinDir('failsafe-restart');
  const a1 = await startTestAgent(cp.address, pin, FAILSAFE);
  const before = a1.agent.engine.localRules().map((r) => `${r.id} ${r.direction} ${formatPrefix(r.prefix)}`);
  assert.equal(a1.dp.journalSize(), 4);
  await crash(a1.agent);
  const a2 = await startTestAgent(cp.address, pin, FAILSAFE);
  t.after(async () => {
    await a2.agent.stop();
    cp.stop();
  });
  assert.equal(a2.dp.createdFresh, false);
  assert.deepEqual(
    a2.agent.engine.localRules().map((r) => `${r.id} ${r.direction} ${formatPrefix(r.prefix)}`),
    before,
  );
  assert.equal(a2.dp.applied.length, 0, 'nothing rewritten on restart');
  // A changed list: the entry that left goes, the one that came gets a new id, the other keeps its own.
  await crash(a2.agent);
  const a3 = await startTestAgent(cp.address, pin, ['--failsafe-cidrs', '198.51.100.0/24,192.0.2.64/26']);
  t.after(() => a3.agent.stop());
  const after = a3.agent.engine.localRules().map((r) => `${r.id - LOCAL_RULE_ID_BASE} ${r.direction} ${formatPrefix(r.prefix)}`);
  assert.deepEqual(after.sort(), [
    '0 ingress 198.51.100.0/24',
    '1 egress 198.51.100.0/24',
    '4 ingress 192.0.2.64/26',
    '5 egress 192.0.2.64/26',
  ]);
  assert.equal(a3.dp.entryFor('ingress', parseCidr('2001:db8:beef::/48')), undefined, 'the removed entry left the kernel');
  assert.equal(a3.dp.entryFor('ingress', parseCidr('192.0.2.64/26'))?.action, 'allow');
});
