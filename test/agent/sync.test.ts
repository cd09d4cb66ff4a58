// The Sync state machine against a scripted control plane (real gRPC on port
// 0) with the agent in process on the fake datapath.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatPrefix } from '../../common/src/cidr.js';
import { ErrorInfo } from '../../proto/gen/google/rpc/error_details.js';
import { Direction } from '../../proto/gen/fleetwall/v1/rule.js';
import { ScriptedControlPlane, wireRule } from '../support/scripted-control-plane.js';
import { crash, fakePinDir, startTestAgent, waitFor } from '../support/agent-harness.js';

const prefixes = (dp: { readEntries(): { prefix: Parameters<typeof formatPrefix>[0] }[] }): string[] =>
  dp
    .readEntries()
    .map((e) => formatPrefix(e.prefix))
    .sort();

test('snapshot: hello carries no revision, ACK only once the rules are in the kernel', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const { agent, dp } = await startTestAgent(cp.address, fakePinDir('snap'));
  t.after(async () => {
    await agent.stop();
    cp.stop();
  });
  const s = await cp.accept();
  const hello = await s.next('hello');
  assert.equal(hello.nodeName, 'node-a');
  assert.deepEqual(
    hello.labels,
    { 'fleetwall.dev/node': 'node-a', zone: 'a', role: 'edge' },
    'its labels and its name as a label (node-scoped bans select it)',
  );
  assert.equal(hello.resumeRevision, 0n);
  assert.equal(hello.storeId, '');
  assert.equal(hello.capacityPerTable, 64n);
  assert.equal(hello.interfaces[0]?.name, 'veth-a');
  assert.ok(hello.agentInstanceId.length > 0);
  let kernelAtAck: string[] = [];
  let metaAtAck = 0n;
  dp.beforeOp = undefined;
  s.startSnapshot(5n, 'store-1');
  s.chunk(5n, [wireRule(1, '192.0.2.0/24'), wireRule(2, '198.51.100.7')], false, 3n);
  s.chunk(5n, [wireRule(3, '2001:db8::/48', { direction: 'egress' })], true, 3n);
  const ack = await s.next('ack');
  kernelAtAck = prefixes(dp);
  metaAtAck = dp.readMeta().revision;
  assert.equal(ack.revision, 5n);
  assert.deepEqual(kernelAtAck, ['192.0.2.0/24', '198.51.100.7/32', '2001:db8::/48']);
  assert.equal(metaAtAck, 5n);
  assert.equal(dp.readMeta().storeId, 'store-1');
  assert.equal(dp.inject('veth-a', 'ingress', '192.0.2.9'), 'drop');
  assert.equal(dp.inject('veth-a', 'egress', '2001:db8::1'), 'drop');
  assert.equal(dp.inject('veth-a', 'ingress', '2001:db8::1'), 'pass');
  // A second snapshot on the same stream is not expected, but a snapshot on a
  // new stream that lacks a rule removes it (below, via the status).
  const st = await s.next('status');
  assert.equal(typeof st.mapFillRatio, 'number');
  assert.ok(st.kernelMemoryBytes > 0n, 'AgentStatus carries the kernel memory of the maps');
});

test('deltas: upserts, deletes, parts (one ACK after the last part), expired on arrival', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const { agent, dp } = await startTestAgent(cp.address, fakePinDir('delta'));
  t.after(async () => {
    await agent.stop();
    cp.stop();
  });
  const s = await cp.accept();
  await s.next('hello');
  s.startSnapshot(10n, 'st');
  s.chunk(10n, [wireRule(1, '10.0.0.1')], true);
  assert.equal((await s.next('ack')).revision, 10n);
  s.delta(11n, [wireRule(2, '10.0.0.2'), wireRule(3, '10.0.0.3', { mode: 'monitor' })]);
  assert.equal((await s.next('ack')).revision, 11n);
  assert.equal(dp.inject('veth-a', 'ingress', '10.0.0.3'), 'would_drop');
  s.delta(12n, [wireRule(4, '10.0.0.4')], [1n], true);
  s.delta(12n, [wireRule(5, '10.0.0.5'), wireRule(6, '10.0.0.6', { expire: new Date(Date.now() - 1000) })], [99n], false);
  assert.equal((await s.next('ack')).revision, 12n);
  assert.deepEqual(prefixes(dp), ['10.0.0.2/32', '10.0.0.3/32', '10.0.0.4/32', '10.0.0.5/32']);
  assert.equal(s.pending('ack').length, 0, 'one ACK for a revision in parts');
  // An empty delta (revision that does not touch this node) is ACKed too.
  s.delta(13n, []);
  assert.equal((await s.next('ack')).revision, 13n);
  assert.equal(dp.readMeta().revision, 13n);
});

test('NACK: a change the kernel cannot take is refused with its reason; the kernel keeps the last good state', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const { agent, dp } = await startTestAgent(cp.address, fakePinDir('nack'), ['--capacity-prefixes', '3']);
  t.after(async () => {
    await agent.stop();
    cp.stop();
  });
  const s = await cp.accept();
  await s.next('hello');
  s.startSnapshot(1n, 'st');
  s.chunk(1n, [wireRule(1, '10.1.0.1'), wireRule(2, '10.1.0.2')], true);
  assert.equal((await s.next('ack')).revision, 1n);
  const good = dp.dump();
  s.delta(2n, [wireRule(3, '10.1.0.3'), wireRule(4, '10.1.0.4')]);
  const nack = await s.next('nack');
  assert.equal(nack.revision, 2n);
  assert.equal(nack.status?.code, 8);
  assert.match(nack.status!.message, /ingress IPv4 table full: the rule set needs 4 prefixes, the table holds 3/);
  const info = ErrorInfo.decode(nack.status!.details[0]!.value);
  assert.equal(info.reason, 'TABLE_FULL');
  assert.equal(info.domain, 'fleetwall.dev');
  assert.equal(info.metadata.capacity, '3');
  assert.deepEqual(dp.dump(), good, 'last good state kept');
  assert.equal(dp.readMeta().revision, 1n);
  await waitFor('status with the error', () => s.pending('status').some((x) => /table full/.test(x.lastError)));
  // An unsupported rule: NACK INVALID_ARGUMENT naming it.
  s.delta(3n, [{ ...wireRule(9, '10.1.0.9'), action: 0 }]);
  const nack3 = await s.next('nack');
  assert.equal(nack3.revision, 3n);
  assert.equal(nack3.status?.code, 3, 'an invalid rule is reported first');
  assert.match(nack3.status!.message, /rule 9 cannot be applied/);
  // Deleting enough makes the full desired set fit: one ACK, everything applied.
  s.delta(4n, [], [1n, 9n]);
  assert.equal((await s.next('ack')).revision, 4n);
  assert.deepEqual(prefixes(dp), ['10.1.0.2/32', '10.1.0.3/32', '10.1.0.4/32']);
  s.delta(5n, [{ ...wireRule(10, '10.1.0.10'), action: 0 }], [2n]);
  const nack5 = await s.next('nack');
  assert.equal(nack5.status?.code, 3);
  assert.match(nack5.status!.message, /rule 10 cannot be applied: action 0 is not supported/);
  assert.deepEqual(prefixes(dp), ['10.1.0.2/32', '10.1.0.3/32', '10.1.0.4/32']);
  await waitFor('in degraded state', () => agent.sync.state === 'degraded');
});

test('restart resumes from the pinned revision (no snapshot); catch-up deltas then InSync, one ACK', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const pin = fakePinDir('resume');
  const a1 = await startTestAgent(cp.address, pin);
  const s1 = await cp.accept();
  await s1.next('hello');
  const store = 'b3b0c442-98fc-4c1c-9d3b-1c6e0a1f2d3e'; // longer than the 16 pinned bytes
  s1.startSnapshot(7n, store);
  s1.chunk(7n, [wireRule(1, '10.2.0.1'), wireRule(2, '10.2.0.2')], true);
  await s1.next('ack');
  await crash(a1.agent);
  const a2 = await startTestAgent(cp.address, pin);
  t.after(async () => {
    await a2.agent.stop();
    cp.stop();
  });
  assert.equal(a2.dp.createdFresh, false);
  assert.deepEqual(prefixes(a2.dp), ['10.2.0.1/32', '10.2.0.2/32'], 'enforcing before any contact');
  assert.equal(a2.dp.applied.length, 0, 'nothing rewritten on restart');
  const s2 = await cp.accept();
  const hello = await s2.next('hello');
  assert.equal(hello.resumeRevision, 7n);
  assert.equal(hello.storeId, store);
  s2.startResume(9n, store);
  s2.delta(8n, [wireRule(3, '10.2.0.3')]);
  s2.delta(9n, [], [1n]);
  s2.inSync(9n);
  assert.equal((await s2.next('ack')).revision, 9n);
  assert.equal(s2.pending('ack').length, 0);
  assert.deepEqual(prefixes(a2.dp), ['10.2.0.2/32', '10.2.0.3/32']);
  assert.equal(a2.dp.readMeta().revision, 9n);
  assert.equal(a2.agent.health().lastSyncMode, 'resume');
  assert.equal(a2.agent.health().snapshots, 0);
});

test('fail static: stream lost -> keep enforcing, local expiry, reconnect with the latest revision', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const { agent, dp } = await startTestAgent(cp.address, fakePinDir('static'));
  t.after(async () => {
    await agent.stop();
    cp.stop();
  });
  const s1 = await cp.accept();
  await s1.next('hello');
  s1.startSnapshot(3n, 'st');
  const soon = new Date(Date.now() + 700);
  s1.chunk(3n, [wireRule(1, '10.3.0.1'), wireRule(2, '10.3.0.2', { expire: soon })], true);
  await s1.next('ack');
  s1.fail();
  await waitFor('disconnected', () => !agent.sync.connected);
  // Refuse the next connections for a while: the agent keeps retrying.
  const s2 = await cp.accept();
  await s2.next('hello');
  s2.fail();
  assert.equal(dp.inject('veth-a', 'ingress', '10.3.0.1'), 'drop', 'enforcing while disconnected');
  await waitFor(
    'expiry applied locally',
    () => dp.entryFor('ingress', { family: 4, bytes: new Uint8Array([10, 3, 0, 2]), len: 32 }) === undefined,
    5000,
  );
  assert.equal(dp.inject('veth-a', 'ingress', '10.3.0.2'), 'pass');
  assert.equal(dp.journalSize(), 1);
  assert.equal(dp.readMeta().revision, 3n, 'a local expiry does not move the revision');
  const s3 = await cp.accept();
  const hello = await s3.next('hello');
  assert.equal(hello.resumeRevision, 3n);
  s3.startResume(4n, 'st');
  s3.delta(4n, [wireRule(2, '10.3.0.2', { expire: soon })]);
  s3.inSync(4n);
  assert.equal((await s3.next('ack')).revision, 4n);
  assert.deepEqual(prefixes(dp), ['10.3.0.1/32'], 'an expired rule re-sent is not re-installed');
  assert.ok(agent.sync.stats.connects >= 3);
});

test('ping/pong both ways; a silent peer is dropped after 3 intervals and the agent reconnects', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const { agent } = await startTestAgent(cp.address, fakePinDir('ping'));
  t.after(async () => {
    await agent.stop();
    cp.stop();
  });
  const s1 = await cp.accept();
  await s1.next('hello');
  s1.startSnapshot(1n, 'st', 150);
  s1.chunk(1n, [], true);
  await s1.next('ack');
  s1.send({ $case: 'ping', value: { nonce: 77n, sendTime: new Date() } });
  assert.equal((await s1.next('pong')).nonce, 77n);
  await waitFor('agent pings', () => s1.received.some((m) => m.$case === 'ping'));
  // Go silent: no pongs, no messages.
  s1.autoPong = false;
  const s2 = await cp.accept(5000);
  assert.equal((await s2.next('hello')).resumeRevision, 1n);
  assert.match(agent.sync.stats.lastDisconnectReason, /silent/);
});

test('counters: cumulative totals of changed entries; the first report on a stream carries every non-zero entry', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const { agent, dp } = await startTestAgent(cp.address, fakePinDir('counters'));
  t.after(async () => {
    await agent.stop();
    cp.stop();
  });
  const s1 = await cp.accept();
  await s1.next('hello');
  s1.startSnapshot(1n, 'st');
  s1.chunk(
    1n,
    [wireRule(1, '10.4.0.1'), wireRule(2, '10.4.0.2'), wireRule(3, '10.4.0.0/24', { action: 'allow', direction: 'egress' })],
    true,
  );
  await s1.next('ack');
  dp.inject('veth-a', 'ingress', '10.4.0.1', 3, 100);
  dp.inject('veth-a', 'ingress', '10.9.9.9', 2, 50);
  let r = await s1.next('counterReport');
  while (r.rules.length === 0) r = await s1.next('counterReport');
  assert.deepEqual(
    r.rules.map((x) => [x.ruleId, x.packets, x.bytes]),
    [[1n, 3n, 300n]],
  );
  const ing = r.interfaces.find((i) => i.direction === Direction.DIRECTION_INGRESS)!;
  assert.equal(ing.interface, 'veth-a');
  assert.equal(ing.counters?.dropPackets, 3n);
  assert.equal(ing.counters?.passPackets, 2n);
  s1.send({ $case: 'counterAck', value: { seq: r.seq } });
  // Only what changed: rule 2 now, rule 1 unchanged.
  dp.inject('veth-a', 'ingress', '10.4.0.2', 1, 60);
  let r2 = await s1.next('counterReport');
  while (r2.rules.length === 0) r2 = await s1.next('counterReport');
  assert.deepEqual(
    r2.rules.map((x) => [x.ruleId, x.packets]),
    [[2n, 1n]],
  );
  assert.ok(r2.seq > r.seq);
  // Delete rule 1 after more packets: its final total is reported, then its slot is freed on CounterAck.
  dp.inject('veth-a', 'ingress', '10.4.0.1', 4, 100);
  s1.delta(2n, [], [1n]);
  await s1.next('ack');
  let fin = await s1.next('counterReport');
  while (!fin.rules.some((x) => x.ruleId === 1n)) fin = await s1.next('counterReport');
  assert.deepEqual(
    fin.rules.find((x) => x.ruleId === 1n),
    { ruleId: 1n, packets: 7n, bytes: 700n },
  );
  const slot1 = [...agent.engine.slots.retired.keys()][0]!;
  assert.ok(agent.engine.slots.retired.has(slot1));
  s1.send({ $case: 'counterAck', value: { seq: fin.seq } });
  await waitFor('retired slot released', () => agent.engine.slots.retired.size === 0);
  // New stream: every non-zero entry again (rule 2 and the interface), cumulative.
  s1.fail();
  const s2 = await cp.accept();
  await s2.next('hello');
  s2.startResume(2n, 'st');
  s2.inSync(2n);
  await s2.next('ack');
  let r3 = await s2.next('counterReport');
  while (r3.rules.length === 0) r3 = await s2.next('counterReport');
  assert.deepEqual(
    r3.rules.map((x) => [x.ruleId, x.packets, x.bytes]),
    [[2n, 1n, 60n]],
  );
  assert.equal(r3.interfaces.find((i) => i.direction === Direction.DIRECTION_INGRESS)?.counters?.dropPackets, 8n);
});

test('health endpoints: /healthz JSON and /metrics with revision, rules, fill ratio, sync state', async (t) => {
  const cp = await ScriptedControlPlane.start();
  const { agent } = await startTestAgent(cp.address, fakePinDir('health'));
  t.after(async () => {
    await agent.stop();
    cp.stop();
  });
  const s = await cp.accept();
  await s.next('hello');
  s.startSnapshot(21n, 'st');
  s.chunk(21n, [wireRule(1, '10.5.0.1'), wireRule(2, '10.5.0.0/16', { direction: 'egress' })], true);
  await s.next('ack');
  const base = `http://127.0.0.1:${agent.httpPort}`;
  const h = await fetch(`${base}/healthz`);
  assert.equal(h.status, 200);
  const body = (await h.json()) as Record<string, unknown>;
  assert.equal(body.appliedRevision, '21');
  assert.equal(body.rulesInKernel, 2);
  assert.equal(body.syncState, 'in_sync');
  const m = await (await fetch(`${base}/metrics`)).text();
  assert.match(m, /^fleetwall_agent_applied_revision 21$/m);
  assert.match(m, /^fleetwall_agent_rules_in_kernel 2$/m);
  assert.match(m, /^fleetwall_agent_map_fill_ratio\{table="ingress IPv4"\} 0\.015625$/m);
  assert.match(m, /^fleetwall_agent_table_size\{table="ingress IPv4"\} 64$/m);
  assert.match(m, /^fleetwall_agent_kernel_memory_bytes\{map="fw_journal"\} \d+$/m);
  assert.ok((body.kernelMemory as { bytes: number }).bytes > 0, 'healthz: kernel memory');
  assert.match(m, /^fleetwall_agent_sync_state\{state="in_sync"\} 1$/m);
  assert.match(m, /^fleetwall_agent_process_resident_memory_bytes \d+/m);
  assert.equal((await fetch(`${base}/nope`)).status, 404);
});
