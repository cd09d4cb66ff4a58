// A Plan on its own, without a datapath: plan() over a rule table and a slot
// pool gives a value with counts, a one-line toString(), a describe() table
// and its ops as text, in the order they would run; planning changes nothing
// (the same plan twice, or a refusal, leaves the table as it was); commitPlan()
// records it so the next plan is empty.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr } from '../../common/src/cidr.js';
import type { RuleAction, RuleDirection, RuleMode } from '../../common/src/policy.js';
import { PlanError, commitPlan, plan } from '../../node-agent/src/reconcile/plan.js';
import { describeOps } from '../../node-agent/src/reconcile/plan-ops.js';
import type { Plan } from '../../node-agent/src/reconcile/plan-value.js';
import type { RuleSpec } from '../../node-agent/src/reconcile/rule-flags.js';
import { RuleTable } from '../../node-agent/src/reconcile/rule-table.js';
import { SlotPool } from '../../node-agent/src/reconcile/slot-pool.js';

function rule(
  id: number,
  cidr: string,
  action: RuleAction = 'deny',
  direction: RuleDirection = 'ingress',
  mode: RuleMode = 'enforce',
): RuleSpec {
  return { id: BigInt(id), prefix: parseCidr(cidr), action, mode, direction, expireUnixMs: 0 };
}

function state(prefixesPerTable = 4) {
  const table = new RuleTable();
  const slots = new SlotPool(8);
  const input = { table, slots, capacity: { prefixesPerTable, counterSlots: 8 } };
  return { table, slots, input, plan: (): Plan => plan(input), commit: (pl: Plan) => commitPlan(table, slots, pl) };
}

test('a plan is a value: counts, one line, a table of kinds and its ops in order', () => {
  const s = state();
  s.table.upsert(rule(1, '10.1.0.0/16'));
  s.table.upsert(rule(2, '10.1.2.0/24', 'allow'));
  s.table.upsert(rule(3, '10.1.2.3/32')); // inside the allow: left out of the kernel
  s.table.upsert(rule(4, '2001:db8::/32', 'deny', 'egress', 'monitor'));
  const pl = s.plan();
  assert.equal(pl.full, false);
  assert.equal(pl.opCount, 7);
  assert.deepEqual(pl.counts, {
    counterResets: 0,
    journalDeletes: 0,
    journalUpserts: 4,
    entryUpserts: 3,
    entryDeletes: 0,
    lateEntryUpserts: 0,
  });
  assert.equal(
    String(pl),
    'incremental plan: 7 ops (4 journal upserts, 3 entry upserts), 4 new rules; entries after: ingress IPv4 2, ingress IPv6 0, egress IPv4 0, egress IPv6 1',
  );
  assert.equal(
    pl.describe(),
    [
      'incremental plan: 7 ops, 4 new rules',
      '  1. counter resets      0',
      '  2. journal deletes     0',
      '  3. journal upserts     4',
      '  4. entry upserts       3',
      '  5. entry deletes       0',
      '  6. late entry upserts  0',
      '  entries after: ingress IPv4 2, ingress IPv6 0, egress IPv4 0, egress IPv6 1',
    ].join('\n'),
  );
  assert.deepEqual(describeOps(s.table, pl), [
    'journal.upsert rule 1 ingress 10.1.0.0/16 deny enforce slot 0',
    'journal.upsert rule 2 ingress 10.1.2.0/24 allow enforce slot 1',
    'journal.upsert rule 3 ingress 10.1.2.3/32 deny enforce slot 2',
    'journal.upsert rule 4 egress 2001:db8::/32 deny monitor slot 3',
    'entry.upsert ingress 10.1.0.0/16 deny enforce slot 0',
    'entry.upsert ingress 10.1.2.0/24 allow enforce slot 1',
    'entry.upsert egress 2001:db8::/32 deny monitor slot 3',
  ]);
  assert.deepEqual(describeOps(s.table, pl, 2), [
    'journal.upsert rule 1 ingress 10.1.0.0/16 deny enforce slot 0',
    'journal.upsert rule 2 ingress 10.1.2.0/24 allow enforce slot 1',
    '... and 5 more',
  ]);
  // Pure: planning again gives the same plan; nothing was recorded.
  assert.equal(String(s.plan()), String(pl));
  assert.equal(s.table.journaledCount, 0);
  assert.equal(s.table.kernel.total, 0);
  s.commit(pl);
  assert.equal(s.table.journaledCount, 4);
  assert.equal(s.table.kernel.total, 3);
  assert.equal(String(s.plan()), 'incremental plan: no ops');
  s.table.markAllDirty();
  assert.equal(String(s.plan()), 'full plan: no ops');
});

test('a plan after deletes: journal delete, the pruned deny comes back, the old entry goes; the freed slot is reset before reuse', () => {
  const s = state();
  for (const r of [rule(1, '10.1.0.0/16'), rule(2, '10.1.2.0/24', 'allow'), rule(3, '10.1.2.3/32')]) s.table.upsert(r);
  s.commit(s.plan());
  s.table.remove(2n);
  const pl = s.plan();
  assert.equal(
    String(pl),
    'incremental plan: 3 ops (1 journal delete, 1 entry upsert, 1 entry delete), 0 new rules; entries after: ingress IPv4 2, ingress IPv6 0, egress IPv4 0, egress IPv6 0',
  );
  assert.deepEqual(describeOps(s.table, pl), [
    'journal.delete rule 2',
    'entry.upsert ingress 10.1.2.3/32 deny enforce slot 2',
    'entry.delete ingress 10.1.2.0/24',
  ]);
  s.commit(pl);
  assert.deepEqual([...s.slots.retired], [[1, 2n]], "rule 2's slot waits for its final counter report");
  s.slots.release(1);
  s.table.upsert(rule(5, '192.0.2.0/24', 'deny', 'ingress', 'monitor'));
  const next = s.plan();
  assert.deepEqual(next.counts, {
    counterResets: 1,
    journalDeletes: 0,
    journalUpserts: 1,
    entryUpserts: 1,
    entryDeletes: 0,
    lateEntryUpserts: 0,
  });
  assert.deepEqual(describeOps(s.table, next), [
    'counter.reset slot 1',
    'journal.upsert rule 5 ingress 192.0.2.0/24 deny monitor slot 1',
    'entry.upsert ingress 192.0.2.0/24 deny monitor slot 1',
  ]);
});

test('a full table: adds wait for the deletes (late upserts); a change that does not fit is refused and leaves the table as it was', () => {
  const s = state(2);
  s.table.upsert(rule(1, '10.0.0.1/32'));
  s.table.upsert(rule(2, '10.0.0.2/32'));
  s.commit(s.plan());
  s.table.remove(1n);
  s.table.upsert(rule(3, '10.0.0.3/32'));
  const pl = s.plan();
  assert.equal(
    pl.describe(),
    [
      'incremental plan: 4 ops, 1 new rule',
      '  1. counter resets      0',
      '  2. journal deletes     1',
      '  3. journal upserts     1',
      '  4. entry upserts       0',
      '  5. entry deletes       1',
      '  6. late entry upserts  1',
      '  entries after: ingress IPv4 2, ingress IPv6 0, egress IPv4 0, egress IPv6 0',
    ].join('\n'),
  );
  assert.deepEqual(describeOps(s.table, pl), [
    'journal.delete rule 1',
    'journal.upsert rule 3 ingress 10.0.0.3/32 deny enforce slot 2',
    'entry.delete ingress 10.0.0.1/32',
    'entry.upsert ingress 10.0.0.3/32 deny enforce slot 2',
  ]);
  // One more rule would need 3 prefixes in a table of 2: refused before any op.
  s.table.upsert(rule(4, '10.0.0.4/32'));
  assert.throws(
    () => s.plan(),
    (e: unknown) =>
      e instanceof PlanError &&
      e.reason === 'TABLE_FULL' &&
      e.message.startsWith('ingress IPv4 table full: the rule set needs 3 prefixes, the table holds 2 (now 2)'),
  );
  assert.equal(s.table.kernel.total, 2, 'nothing recorded');
  // The same desired set fits a larger table: the refused plan changed nothing.
  const bigger = plan({ ...s.input, capacity: { prefixesPerTable: 3, counterSlots: 8 } });
  assert.equal(
    String(bigger),
    'incremental plan: 6 ops (1 journal delete, 2 journal upserts, 1 entry upsert, 1 entry delete, 1 late entry upsert), 2 new rules; entries after: ingress IPv4 3, ingress IPv6 0, egress IPv4 0, egress IPv6 0',
  );
});
