// The reconcile planner against the reference semantics: after every plan is
// applied, one longest-prefix lookup in the (fake) kernel gives decide()'s
// verdict and counts the deciding rule's slot; incremental plans end where a
// full plan from scratch ends; ordering, slots and capacity behave.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatPrefix, parseCidr } from '../../common/src/cidr.js';
import type { MapOp } from '../../node-agent/src/datapath/datapath.js';
import { PlanError, commitPlan, plan } from '../../node-agent/src/reconcile/plan.js';
import { formatOp, planOpsArray } from '../../node-agent/src/reconcile/plan-ops.js';
import type { RuleSpec } from '../../node-agent/src/reconcile/rule-flags.js';
import { FakeDatapath } from '../support/fake-datapath.js';
import { rngUnit } from '../support/rng.js';
import { applyAll, checkAgainstDecide, pinDir, randomRule, rig, rule } from '../support/plan-rig.js';

test('kernel lookups agree with decide() after snapshots and random deltas (incremental == full)', async () => {
  for (const seed of [1, 2, 3, 4]) {
    const rand = rngUnit(seed);
    const r = await rig();
    const desired = new Map<bigint, RuleSpec>();
    let nextId = 1;
    for (let i = 0; i < 150; i++) {
      const x = randomRule(rand, nextId++);
      desired.set(x.id, x);
      r.rec.table.upsert(x);
    }
    await applyAll(r);
    checkAgainstDecide(r, desired, rand);
    for (let step = 0; step < 40; step++) {
      const n = 1 + Math.floor(rand() * 6);
      for (let k = 0; k < n; k++) {
        const roll = rand();
        const ids = [...desired.keys()];
        if (roll < 0.45 || ids.length === 0) {
          const x = randomRule(rand, nextId++);
          desired.set(x.id, x);
          r.rec.table.upsert(x);
        } else if (roll < 0.75) {
          const id = ids[Math.floor(rand() * ids.length)]!;
          desired.delete(id);
          r.rec.table.remove(id);
        } else {
          // Change action/mode/direction of an existing rule (same id).
          const id = ids[Math.floor(rand() * ids.length)]!;
          const old = desired.get(id)!;
          const x: RuleSpec = {
            ...old,
            action: rand() < 0.5 ? 'allow' : 'deny',
            mode: rand() < 0.5 ? 'monitor' : 'enforce',
            direction: rand() < 0.5 ? 'egress' : 'ingress',
          };
          desired.set(id, x);
          r.rec.table.upsert(x);
        }
      }
      await applyAll(r);
      checkAgainstDecide(r, desired, rand, 150);
    }
    // A fresh agent planning the same desired set from scratch ends at the same kernel entries.
    const fresh = await rig();
    for (const x of desired.values()) fresh.rec.table.upsert(x);
    await applyAll(fresh);
    const norm = (d: FakeDatapath): string[] => d.dump().map((l) => l.replace(/ \d+$/, ''));
    assert.deepEqual(norm(r.dp), norm(fresh.dp), `seed ${seed}: incremental and full plans differ`);
    assert.equal(r.dp.journalSize(), desired.size);
  }
});

test('allow-covers-deny pruning: a covered deny leaves the kernel and comes back with the allow gone', async () => {
  const r = await rig();
  const t = r.rec.table;
  t.upsert(rule(1, '10.1.2.0/24', 'deny'));
  t.upsert(rule(2, '10.1.2.3/32', 'deny', { mode: 'monitor' }));
  t.upsert(rule(3, '10.1.0.0/16', 'deny'));
  await applyAll(r);
  assert.equal(r.dp.readEntries().length, 3);
  t.upsert(rule(4, '10.1.2.0/23', 'allow'));
  await applyAll(r);
  // /24 and /32 inside the allow leave; the /16 outside stays.
  assert.deepEqual(
    r.dp
      .readEntries()
      .map((e) => `${formatPrefix(e.prefix)} ${e.action}`)
      .sort(),
    ['10.1.0.0/16 deny', '10.1.2.0/23 allow'],
  );
  t.remove(4n);
  await applyAll(r);
  assert.deepEqual(
    r.dp
      .readEntries()
      .map((e) => `${formatPrefix(e.prefix)} ${e.action} ${e.mode}`)
      .sort(),
    ['10.1.0.0/16 deny enforce', '10.1.2.0/24 deny enforce', '10.1.2.3/32 deny monitor'],
  );
  // The pruned rules kept their slots all along.
  const s1 = t.rules.slot[t.find(1n)]!;
  assert.equal(r.dp.entryFor('ingress', parseCidr('10.1.2.0/24'))!.slot, s1);
});

test('same-prefix merging: allow beats deny, enforce beats monitor, then the lowest id', async () => {
  const r = await rig();
  const t = r.rec.table;
  t.upsert(rule(7, '192.0.2.0/24', 'deny', { mode: 'monitor' }));
  t.upsert(rule(9, '192.0.2.0/24', 'deny'));
  t.upsert(rule(8, '192.0.2.0/24', 'deny'));
  await applyAll(r);
  const at = (): string => {
    const e = r.dp.entryFor('ingress', parseCidr('192.0.2.0/24'))!;
    const owner = [...[7n, 8n, 9n, 10n]].find((id) => t.find(id) !== -1 && t.rules.slot[t.find(id)] === e.slot);
    return `${e.action} ${e.mode} ${owner}`;
  };
  assert.equal(at(), 'deny enforce 8');
  t.upsert(rule(10, '192.0.2.0/24', 'allow'));
  await applyAll(r);
  assert.equal(at(), 'allow enforce 10');
  t.remove(10n);
  t.remove(8n);
  await applyAll(r);
  assert.equal(at(), 'deny enforce 9');
  t.remove(9n);
  await applyAll(r);
  assert.equal(at(), 'deny monitor 7');
});

test('ops order: resets, journal, entry upserts, then entry deletes; a replacement never leaves a gap', async () => {
  const r = await rig();
  const t = r.rec.table;
  for (let i = 1; i <= 3; i++) t.upsert(rule(i, `198.51.100.${i}/32`));
  await applyAll(r);
  // Replace /32s by a covering /24 (delete 1..3, add 4) in one change.
  for (let i = 1; i <= 3; i++) t.remove(BigInt(i));
  t.upsert(rule(4, '198.51.100.0/24'));
  const pl = plan({ table: t, slots: r.rec.slots, capacity: r.dp.capacity });
  const ops = planOpsArray(t, pl);
  const kinds = ops.map((o) => o.kind);
  const firstDelete = kinds.indexOf('entry.delete');
  const lastUpsert = kinds.lastIndexOf('entry.upsert');
  assert.ok(lastUpsert < firstDelete, `upserts before deletes: ${kinds.join(',')}`);
  assert.ok(kinds.lastIndexOf('journal.upsert') < kinds.indexOf('entry.upsert'), 'journal first (write-ahead)');
  // Replay the ops one by one: every address of the /24's old /32s is dropped at every step.
  const probe = new FakeDatapath({ pinDir: pinDir(), capacity: r.dp.capacity });
  probe.apply(r.dp.readEntries().map((entry) => ({ kind: 'entry.upsert', entry }) as MapOp));
  for (const op of ops) {
    probe.apply([op]);
    for (let i = 1; i <= 3; i++) assert.equal(probe.inject('x', 'ingress', `198.51.100.${i}`), 'drop', `after ${op.kind}`);
  }
  r.dp.apply(ops);
  commitPlan(t, r.rec.slots, pl);
  assert.equal(r.dp.readEntries().length, 1);
});

test('counter slots: stable for a rule, retired on delete, reset before reuse', async () => {
  const r = await rig();
  const t = r.rec.table;
  t.upsert(rule(1, '203.0.113.1/32'));
  t.upsert(rule(2, '203.0.113.2/32'));
  await applyAll(r);
  const s1 = t.rules.slot[t.find(1n)]!;
  r.dp.inject('eth0', 'ingress', '203.0.113.1', 5);
  // Changing mode keeps the slot.
  t.upsert(rule(1, '203.0.113.1/32', 'deny', { mode: 'monitor' }));
  await applyAll(r);
  assert.equal(t.rules.slot[t.find(1n)], s1);
  t.remove(1n);
  await applyAll(r);
  assert.equal(r.rec.slots.retired.get(s1), 1n, 'retired until its final count is reported');
  t.upsert(rule(3, '203.0.113.3/32'));
  await applyAll(r);
  assert.notEqual(t.rules.slot[t.find(3n)], s1, 'a retired slot is not reused');
  r.rec.slots.release(s1);
  t.upsert(rule(4, '203.0.113.4/32'));
  const pl = plan({ table: t, slots: r.rec.slots, capacity: r.dp.capacity });
  assert.deepEqual([...pl.newSlots], [s1], 'freed slots are reused first');
  const ops = planOpsArray(t, pl);
  assert.deepEqual(ops[0], { kind: 'counter.reset', slot: s1 });
  r.dp.apply(ops);
  commitPlan(t, r.rec.slots, pl);
  assert.equal(r.dp.readRuleCounters(s1 + 1).packets[s1], 0n);
});

test('capacity: a change that overfills a table is refused before any op, naming table and numbers', async () => {
  const r = await rig(pinDir(), { prefixesPerTable: 4, counterSlots: 16 });
  const t = r.rec.table;
  for (let i = 1; i <= 4; i++) t.upsert(rule(i, `10.9.0.${i}/32`));
  await applyAll(r);
  const before = r.dp.applied.length;
  t.upsert(rule(5, '10.9.0.5/32'));
  t.upsert(rule(6, '2001:db8::1/128'));
  const res = await r.rec.reconcile({ revision: 9n, storeId: 's' });
  assert.equal(res.ok, false);
  if (res.ok) return;
  assert.equal(res.code, 8);
  assert.equal(res.reason, 'TABLE_FULL');
  assert.match(res.message, /ingress IPv4 table full: the rule set needs 5 prefixes, the table holds 4/);
  assert.equal(r.dp.applied.length, before, 'nothing applied');
  assert.equal(r.dp.readMeta().revision, 0n, 'meta not advanced');
  // Deleting one rule makes room; the next attempt takes the full desired set.
  t.remove(1n);
  const ok = await r.rec.reconcile({ revision: 10n, storeId: 's' });
  assert.ok(ok.ok);
  assert.equal(r.dp.readEntries().length, 5);
  assert.equal(r.dp.readMeta().revision, 10n);
});

test('a full table with deletes in the same change: adds that do not fit wait for the deletes, in the same apply call', async () => {
  const r = await rig(pinDir(), { prefixesPerTable: 3, counterSlots: 16 });
  const t = r.rec.table;
  for (let i = 1; i <= 3; i++) t.upsert(rule(i, `10.8.0.${i}/32`));
  await applyAll(r);
  t.remove(1n);
  t.remove(2n);
  t.upsert(rule(4, '10.8.0.4/32'));
  t.upsert(rule(5, '10.8.0.5/32'));
  const calls = r.dp.applied.length;
  await applyAll(r);
  assert.deepEqual(
    r.dp
      .readEntries()
      .map((e) => formatPrefix(e.prefix))
      .sort(),
    ['10.8.0.3/32', '10.8.0.4/32', '10.8.0.5/32'],
  );
  // One call: the datapath counts capacity net of the deletes, in op order.
  assert.equal(r.dp.applied.length, calls + 1, 'the whole change in one apply call');
  // The table is full: neither add fits next to the three present, both wait for the deletes.
  assert.deepEqual(
    r.dp.applied
      .at(-1)!
      .map(formatOp)
      .filter((o) => o.startsWith('entry.')),
    [
      'entry.delete ingress 10.8.0.1/32',
      'entry.delete ingress 10.8.0.2/32',
      'entry.upsert ingress 10.8.0.4/32 deny enforce slot 3',
      'entry.upsert ingress 10.8.0.5/32 deny enforce slot 4',
    ],
  );
  // The same ops with every add first would overfill the table at that point: the datapath refuses.
  const probe = new FakeDatapath({ pinDir: pinDir(), capacity: { prefixesPerTable: 3, counterSlots: 16 } });
  probe.apply(
    ['10.8.0.1/32', '10.8.0.2/32', '10.8.0.3/32'].map(
      (c) =>
        ({
          kind: 'entry.upsert',
          entry: { direction: 'ingress', prefix: parseCidr(c), action: 'deny', mode: 'enforce', slot: 1 },
        }) as MapOp,
    ),
  );
  const up = (c: string): MapOp => ({
    kind: 'entry.upsert',
    entry: { direction: 'ingress', prefix: parseCidr(c), action: 'deny', mode: 'enforce', slot: 2 },
  });
  const dl = (c: string): MapOp => ({ kind: 'entry.delete', direction: 'ingress', prefix: parseCidr(c) });
  assert.throws(
    () => probe.apply([up('10.8.0.4/32'), up('10.8.0.5/32'), dl('10.8.0.1/32'), dl('10.8.0.2/32')]),
    /would hold 5 prefixes, capacity is 3/,
  );
  assert.throws(() => probe.apply([up('10.8.0.4/32'), dl('10.8.0.1/32'), dl('10.8.0.2/32'), up('10.8.0.5/32')]), /would hold 4 prefixes/);
  probe.apply([dl('10.8.0.1/32'), up('10.8.0.4/32'), dl('10.8.0.2/32'), up('10.8.0.5/32')]);
  assert.equal(probe.readEntries().length, 3);
});

test('counter slots exhausted: refused with RESOURCE_EXHAUSTED', async () => {
  const r = await rig(pinDir(), { prefixesPerTable: 100, counterSlots: 3 });
  for (let i = 1; i <= 4; i++) r.rec.table.upsert(rule(i, `10.7.0.${i}/32`));
  const res = await r.rec.reconcile();
  assert.equal(res.ok, false);
  if (!res.ok) {
    assert.equal(res.reason, 'COUNTER_SLOTS_EXHAUSTED');
    assert.match(res.message, /4 new rules need a slot, 3 of 3 are free/);
  }
  assert.equal(r.dp.readEntries().length, 0);
});

test('a kernel refusal part-way is repaired to the last good state', async () => {
  const r = await rig();
  const t = r.rec.table;
  t.upsert(rule(1, '10.6.0.1/32'));
  t.upsert(rule(2, '10.6.0.0/24', 'allow'));
  await applyAll(r);
  const good = r.dp.dump();
  const goodJournal = r.dp
    .readJournal()
    .map((j) => `${j.id} ${formatPrefix(j.prefix)} ${j.action} ${j.slot}`)
    .sort();
  t.remove(2n);
  t.upsert(rule(3, '10.6.1.0/24'));
  t.upsert(rule(4, '10.6.2.0/24', 'deny', { direction: 'egress' }));
  r.dp.fault = { atOp: 4, errno: 12 };
  const res = await r.rec.reconcile({ revision: 5n, storeId: 's' });
  assert.equal(res.ok, false);
  if (!res.ok) assert.ok(res.partial);
  assert.deepEqual(r.dp.dump(), good);
  assert.deepEqual(
    r.dp
      .readJournal()
      .map((j) => `${j.id} ${formatPrefix(j.prefix)} ${j.action} ${j.slot}`)
      .sort(),
    goodJournal,
  );
  // The next attempt reaches the full desired set.
  await applyAll(r);
  assert.deepEqual(
    r.dp
      .readEntries()
      .map((e) => `${e.direction} ${formatPrefix(e.prefix)}`)
      .sort(),
    ['egress 10.6.2.0/24', 'ingress 10.6.0.1/32', 'ingress 10.6.1.0/24'],
  );
});

test('invalid rules are refused (INVALID_ARGUMENT) until deleted', async () => {
  const r = await rig();
  r.rec.table.upsert(rule(1, '10.3.0.1/32'));
  r.rec.table.markInvalid(2n, 'action is ACTION_UNSPECIFIED');
  const res = await r.rec.reconcile();
  assert.equal(res.ok, false);
  if (!res.ok) {
    assert.equal(res.code, 3);
    assert.match(res.message, /rule 2 cannot be applied: action is ACTION_UNSPECIFIED/);
  }
  assert.equal(r.dp.readEntries().length, 0);
  r.rec.table.remove(2n);
  await applyAll(r);
  assert.equal(r.dp.readEntries().length, 1);
});

test('plan refuses with PlanError type for capacity (direct API)', async () => {
  const r = await rig(pinDir(), { prefixesPerTable: 1, counterSlots: 8 });
  r.rec.table.upsert(rule(1, '10.2.0.1/32', 'deny', { direction: 'egress' }));
  r.rec.table.upsert(rule(2, '10.2.0.2/32', 'deny', { direction: 'egress' }));
  assert.throws(
    () => plan({ table: r.rec.table, slots: r.rec.slots, capacity: r.dp.capacity }),
    (e: unknown) => e instanceof PlanError && /egress IPv4 table full/.test(e.message),
  );
});
