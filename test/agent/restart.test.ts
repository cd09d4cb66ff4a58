// The reconciler across restarts on the fake pins: the pinned state is read
// back (Reconciler.open) and only the difference is applied; journal rules
// that expired meanwhile leave; the pinned store id.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatPrefix, parseCidr } from '../../common/src/cidr.js';
import { plan } from '../../node-agent/src/reconcile/plan.js';
import { describeOps } from '../../node-agent/src/reconcile/plan-ops.js';
import { Reconciler } from '../../node-agent/src/reconcile/reconciler.js';
import type { RuleSpec } from '../../node-agent/src/reconcile/rule-flags.js';
import { FakeDatapath } from '../support/fake-datapath.js';
import { rngUnit } from '../support/rng.js';
import { applyAll, checkAgainstDecide, log, pinDir, randomRule, rig, rule } from '../support/plan-rig.js';

test('restart: the pinned state is read back and nothing is flushed or rewritten', async () => {
  const dir = pinDir();
  const a = await rig(dir);
  const rand = rngUnit(99);
  const desired = new Map<bigint, RuleSpec>();
  for (let i = 1; i <= 200; i++) {
    const x = randomRule(rand, i);
    desired.set(x.id, x);
    a.rec.table.upsert(x);
  }
  await applyAll(a);
  a.dp.apply([], { revision: 42n, storeId: 'store-a' });
  const dump = a.dp.dump();
  // "kill -9": no close().
  const b = await rig(dir);
  assert.equal(b.dp.createdFresh, false);
  assert.equal(b.rec.table.desiredCount, 200);
  const pl = plan({ table: b.rec.table, slots: b.rec.slots, capacity: b.dp.capacity });
  assert.equal(pl.opCount, 0, 'a restart with an intact state applies nothing');
  await applyAll(b);
  assert.deepEqual(b.dp.dump(), dump);
  checkAgainstDecide(b, desired, rand);
  assert.equal(b.dp.readMeta().revision, 42n);
});

test('restart: drift between journal and kernel is fixed by the difference only', async () => {
  const dir = pinDir();
  const a = await rig(dir);
  for (let i = 1; i <= 5; i++) a.rec.table.upsert(rule(i, `10.5.0.${i}/32`));
  a.rec.table.upsert(rule(6, '10.5.1.0/24', 'deny', { expire: Date.now() - 1000 + 60_000 }));
  await applyAll(a);
  // Someone deleted an entry and added a stray one behind the agent's back.
  a.dp.apply([
    { kind: 'entry.delete', direction: 'ingress', prefix: parseCidr('10.5.0.3/32') },
    { kind: 'entry.upsert', entry: { direction: 'ingress', prefix: parseCidr('10.99.0.0/16'), action: 'deny', mode: 'enforce', slot: 77 } },
  ]);
  const b = await rig(dir);
  const pl = plan({ table: b.rec.table, slots: b.rec.slots, capacity: b.dp.capacity });
  // Only the missing entry (rule 3, slot 2) comes back and the stray one goes: nothing else is rewritten.
  assert.deepEqual(describeOps(b.rec.table, pl), [
    'entry.upsert ingress 10.5.0.3/32 deny enforce slot 2',
    'entry.delete ingress 10.99.0.0/16',
  ]);
});

test('restart: journal rules that expired meanwhile leave the kernel and the journal', async () => {
  const dir = pinDir();
  let now = 1_000_000;
  const dp = new FakeDatapath({ pinDir: dir });
  const a = await Reconciler.open(dp, log, { now: () => now });
  a.table.upsert(rule(1, '10.4.0.1/32', 'deny', { expire: now + 5000 }));
  a.table.upsert(rule(2, '10.4.0.2/32'));
  await a.reconcile();
  now += 10_000;
  const dp2 = new FakeDatapath({ pinDir: dir });
  const b = await Reconciler.open(dp2, log, { now: () => now });
  assert.equal(b.loaded.expired, 1);
  await b.reconcile();
  assert.deepEqual(
    dp2.readEntries().map((e) => formatPrefix(e.prefix)),
    ['10.4.0.2/32'],
  );
  assert.deepEqual(
    dp2.readJournal().map((j) => j.id),
    [2n],
  );
});

test('store ids: a UUID is pinned whole; one longer than the pins hold is pinned as no store (a restart takes a snapshot)', async () => {
  const r = await rig();
  r.rec.table.upsert(rule(1, '10.3.9.1/32'));
  const uuid = 'b3b0c442-98fc-4c1c-9d3b-1c6e0a1f2d3e';
  assert.ok((await r.rec.reconcile({ revision: 4n, storeId: uuid })).ok);
  assert.deepEqual(r.dp.readMeta(), { revision: 4n, storeId: uuid });
  const long = 's'.repeat(65);
  const res = await r.rec.reconcile({ revision: 5n, storeId: long });
  assert.ok(res.ok, 'not a refusal');
  assert.deepEqual(r.dp.readMeta(), { revision: 0n, storeId: '' });
});
