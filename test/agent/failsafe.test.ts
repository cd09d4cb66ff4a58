// The agent's failsafe entries as values (failsafe-plan.ts), the resolver
// around them (failsafe.ts, with a scripted DNS), and agent-local rules in
// the rule table (reconcile/local-rules.ts): snapshots, deletes and rules
// from the wire never touch them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { formatPrefix, parseCidr } from '../../common/src/cidr.js';
import { Failsafe, type Lookup } from '../../node-agent/src/failsafe/failsafe.js';
import { controlPlaneHost, failsafeEntries, planLocalRules } from '../../node-agent/src/failsafe/failsafe-plan.js';
import { isLocalRuleId, LOCAL_RULE_ID_BASE } from '../../node-agent/src/reconcile/local-rules.js';
import type { RuleSpec } from '../../node-agent/src/reconcile/rule-flags.js';
import { RuleTable } from '../../node-agent/src/reconcile/rule-table.js';
import { applyRawRules } from '../../node-agent/src/sync/raw-rules.js';
import { decodeSyncResponse } from '../../node-agent/src/sync/sync-codec.js';
import { SyncResponse } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { wireRule } from '../support/scripted-control-plane.js';

const show = (rules: readonly RuleSpec[]): string[] =>
  rules.map((r) => `${r.id - LOCAL_RULE_ID_BASE} ${r.direction} ${formatPrefix(r.prefix)} ${r.action}`).sort();

test('control-plane targets: the host of host:port and [v6]:port; a Unix socket has none', () => {
  assert.equal(controlPlaneHost('cp.example:50051'), 'cp.example');
  assert.equal(controlPlaneHost('192.0.2.10:50051'), '192.0.2.10');
  assert.equal(controlPlaneHost('[2001:db8::10]:50051'), '2001:db8::10');
  assert.equal(controlPlaneHost('unix:/run/fleetwall/cp.sock'), undefined);
});

test('failsafe entries: control-plane addresses and --failsafe-cidrs, one per CIDR; loopback only when lo is attached', () => {
  const inputs = {
    controlPlanes: [
      { target: 'cp.example:50051', addresses: ['192.0.2.10', '2001:db8::10', '127.0.0.1', '::ffff:192.0.2.11'] },
      { target: '192.0.2.10:50052', addresses: ['192.0.2.10'] },
    ],
    failsafeCidrs: ['10.9.0.0/16', '192.0.2.10/32'],
    loopbackAttached: false,
  };
  assert.deepEqual(
    failsafeEntries(inputs).map((e) => `${e.cidr} <- ${e.source}`),
    [
      '192.0.2.10/32 <- control plane cp.example:50051',
      '2001:db8::10/128 <- control plane cp.example:50051',
      '192.0.2.11/32 <- control plane cp.example:50051',
      '10.9.0.0/16 <- --failsafe-cidrs',
    ],
  );
  assert.ok(
    failsafeEntries({ ...inputs, loopbackAttached: true }).some((e) => e.cidr === '127.0.0.1/32'),
    'loopback is kept when fleetwall guards lo',
  );
});

test('local rules: an allow per entry and direction; ids stay with their prefix and direction; new ones above the highest', () => {
  const e = (cidr: string) => ({ prefix: parseCidr(cidr), cidr, source: 't' });
  const first = planLocalRules([], [e('192.0.2.10/32'), e('10.9.0.0/16')], false);
  assert.ok(first.every((r) => isLocalRuleId(r.id) && r.action === 'allow' && r.mode === 'enforce' && r.expireUnixMs === 0));
  assert.deepEqual(show(first), [
    '0 ingress 192.0.2.10/32 allow',
    '1 egress 192.0.2.10/32 allow',
    '2 ingress 10.9.0.0/16 allow',
    '3 egress 10.9.0.0/16 allow',
  ]);
  // The control plane moved: 192.0.2.10 leaves, 192.0.2.20 arrives with new ids; 10.9/16 keeps its ids.
  const second = planLocalRules(first, [e('192.0.2.20/32'), e('10.9.0.0/16')], false);
  assert.deepEqual(show(second), [
    '2 ingress 10.9.0.0/16 allow',
    '3 egress 10.9.0.0/16 allow',
    '4 ingress 192.0.2.20/32 allow',
    '5 egress 192.0.2.20/32 allow',
  ]);
  // A name that did not resolve: what an earlier resolution installed stays.
  assert.deepEqual(show(planLocalRules(second, [e('10.9.0.0/16')], true)), show(second));
  assert.deepEqual(show(planLocalRules(second, [e('10.9.0.0/16')], false)), ['2 ingress 10.9.0.0/16 allow', '3 egress 10.9.0.0/16 allow']);
});

/** An engine stand-in: the local rules as a list, changed the way Engine.replaceLocalRules does. */
function fakeEngine() {
  let local: readonly RuleSpec[] = [];
  return {
    get local() {
      return local;
    },
    set local(v: readonly RuleSpec[]) {
      local = v;
    },
    async replaceLocalRules(compute: (current: readonly RuleSpec[]) => readonly RuleSpec[]): Promise<void> {
      local = compute(local);
    },
  };
}

test('resolver: names resolved at start and again on refresh; a failed look-up keeps the last good entries', async () => {
  const answers = new Map<string, string[] | Error>([['cp.example', ['192.0.2.10']]]);
  const lookups: string[] = [];
  const lookup: Lookup = async (host) => {
    lookups.push(host);
    const a = answers.get(host);
    if (a instanceof Error || a === undefined) throw a ?? new Error('ENOTFOUND');
    return a;
  };
  const engine = fakeEngine();
  const cfg = { controlPlanes: ['cp.example:50051', 'unix:/run/cp.sock', '198.51.100.1:50051'], failsafeCidrs: [], interfaces: ['eth0'] };
  const fs = new Failsafe(cfg, engine, pino({ level: 'silent' }), lookup);
  await fs.refresh();
  assert.deepEqual(lookups, ['cp.example'], 'IP literals and Unix sockets need no look-up');
  assert.deepEqual(
    fs.entries.map((e) => `${e.cidr} ${e.source}`),
    ['192.0.2.10/32 control plane cp.example:50051', '198.51.100.1/32 control plane 198.51.100.1:50051'],
  );
  assert.equal(engine.local.length, 4);
  // The control plane moved.
  answers.set('cp.example', ['192.0.2.20', '2001:db8::20']);
  await fs.refresh();
  assert.deepEqual(
    fs.entries.map((e) => e.cidr),
    ['192.0.2.20/32', '2001:db8::20/128', '198.51.100.1/32'],
  );
  assert.equal(engine.local.length, 6);
  // DNS down: the last answer stays in force.
  answers.set('cp.example', new Error('EAI_AGAIN'));
  await fs.refresh();
  assert.deepEqual(
    fs.entries.map((e) => e.cidr),
    ['192.0.2.20/32', '2001:db8::20/128', '198.51.100.1/32'],
  );
  // A restarted agent whose name does not resolve: the journaled local rules stay, reported as kept.
  const restarted = fakeEngine();
  restarted.local = engine.local;
  const fs2 = new Failsafe(cfg, restarted, pino({ level: 'silent' }), lookup);
  await fs2.refresh();
  assert.deepEqual(show(restarted.local), show(engine.local), 'nothing removed, ids kept');
  assert.deepEqual(
    fs2.entries.map((e) => `${e.cidr} ${e.source.startsWith('an earlier resolution') ? 'kept' : e.source}`),
    ['198.51.100.1/32 control plane 198.51.100.1:50051', '192.0.2.20/32 kept', '2001:db8::20/128 kept'],
  );
});

const local = (n: bigint, cidr: string, direction: 'ingress' | 'egress' = 'ingress'): RuleSpec => ({
  id: LOCAL_RULE_ID_BASE + n,
  direction,
  prefix: parseCidr(cidr),
  action: 'allow',
  mode: 'enforce',
  expireUnixMs: 0,
});

test('rule table: snapshots, deletes and the wire never remove an agent-local rule; a wire rule in the reserved range is refused', () => {
  const t = new RuleTable();
  t.upsertLocal(local(0n, '192.0.2.10/32'));
  t.upsertLocal(local(1n, '192.0.2.10/32', 'egress'));
  assert.throws(() => t.upsertLocal({ ...local(0n, '10.0.0.1/32'), id: 5n }), /not in the agent-local range/);
  // A snapshot that does not carry them.
  t.beginSnapshot(0);
  t.upsert({ id: 1n, direction: 'ingress', prefix: parseCidr('192.0.2.0/24'), action: 'deny', mode: 'enforce', expireUnixMs: 0 });
  t.endSnapshot();
  assert.equal(t.localRules().length, 2);
  assert.equal(t.desiredCount, 3);
  // A delete of a local id (from a delta) is ignored.
  t.remove(LOCAL_RULE_ID_BASE);
  assert.equal(t.localRules().length, 2);
  // A rule from the wire with a reserved id: invalid (NACK), the local rule stays as it is.
  const enc = SyncResponse.encode({
    msg: {
      $case: 'snapshotChunk',
      value: { revision: 2n, rules: [wireRule(LOCAL_RULE_ID_BASE, '203.0.113.0/24')], last: true, totalRules: 1n },
    },
  }).finish();
  const m = decodeSyncResponse(Buffer.from(enc));
  if (m.msg?.$case !== 'snapshotChunk') throw new Error('not a chunk');
  const res = applyRawRules(t, m.msg.value.rules, Date.now());
  assert.deepEqual(res, { upserted: 0, expired: 0, invalid: 1 });
  assert.match(t.invalidRules.get(LOCAL_RULE_ID_BASE)!, /reserved range/);
  assert.deepEqual(show(t.localRules()), ['0 ingress 192.0.2.10/32 allow', '1 egress 192.0.2.10/32 allow']);
  // Removed only as local rules.
  t.removeLocal(LOCAL_RULE_ID_BASE + 1n);
  assert.deepEqual(show(t.localRules()), ['0 ingress 192.0.2.10/32 allow']);
  assert.equal(t.desiredCount, 2);
});
