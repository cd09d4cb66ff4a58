// The fan-out hub without any I/O: per-node filtering, grouping by the label
// keys selectors use, one encoding per group, snapshots per group.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SyncResponse } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { RuleCache } from '../../control-plane/src/sync/rule-cache.js';
import { type HubSession, SyncHub } from '../../control-plane/src/sync/sync-hub.js';
import type { SyncRuleRow } from '../../control-plane/src/store/change-log.js';

class FakeSession implements HubSession {
  groupKey = '';
  readonly got: { revision: bigint; parts: readonly Buffer[] }[] = [];
  constructor(
    readonly nodeName: string,
    readonly labels: Record<string, string>,
  ) {}
  deliver(revision: bigint, parts: readonly Buffer[]): void {
    this.got.push({ revision, parts });
  }
}

const row = (id: bigint, cidr: string, selector: Record<string, string> = {}): SyncRuleRow => ({
  id,
  cidr,
  action: 1,
  direction: 1,
  mode: 1,
  expire_time: null,
  selector_key: JSON.stringify(Object.fromEntries(Object.entries(selector).sort())),
});

function delta(b: Buffer) {
  const m = SyncResponse.decode(b).msg;
  assert.equal(m?.$case, 'delta');
  return m.$case === 'delta' ? m.value : undefined!;
}

test('nodes differing only in labels no selector uses share one group and one encoding', () => {
  const cache = new RuleCache();
  const hub = new SyncHub(cache, 1 << 20);
  const nodes = Array.from({ length: 50 }, (_, i) => new FakeSession(`n${i}`, { host: `n${i}`, env: i % 2 ? 'prod' : 'dev' }));
  for (const n of nodes) hub.register(n);
  assert.equal(hub.groupCount, 1, 'no selector uses host or env yet');
  const t1 = cache.apply(1n, [{ ruleId: 1n, row: row(1n, '10.0.0.0/8') }]);
  hub.publish(1n, new Date(), t1);
  assert.ok(
    nodes.every((n) => n.got[0]!.parts[0] === nodes[0]!.got[0]!.parts[0]),
    'the same Buffer for everyone',
  );
  // A selector on env splits the fleet in two groups; host still does not matter.
  const t2 = cache.apply(2n, [{ ruleId: 2n, row: row(2n, '192.0.2.0/24', { env: 'prod' }) }]);
  hub.publish(2n, new Date(), t2);
  assert.equal(hub.groupCount, 2);
  for (const n of nodes) {
    const d = delta(n.got[1]!.parts[0]!);
    assert.equal(d.revision, 2n);
    assert.deepEqual(
      d.upserts.map((u) => u.id),
      n.labels.env === 'prod' ? [2n] : [],
      n.nodeName,
    );
  }
  // Moving the rule to dev: a delete for prod, an upsert for dev.
  const t3 = cache.apply(3n, [{ ruleId: 2n, row: row(2n, '192.0.2.0/24', { env: 'dev' }) }]);
  hub.publish(3n, new Date(), t3);
  for (const n of nodes) {
    const d = delta(n.got[2]!.parts[0]!);
    if (n.labels.env === 'prod') assert.deepEqual([d.upserts.length, d.deletes], [0, [2n]]);
    else assert.deepEqual([d.upserts.map((u) => u.id), d.deletes], [[2n], []]);
  }
  // Deleting a rule nobody in a group had: that group gets an empty delta.
  const t4 = cache.apply(4n, [{ ruleId: 2n, row: null }]);
  hub.publish(4n, new Date(), t4);
  const prod = delta(nodes.find((n) => n.labels.env === 'prod')!.got[3]!.parts[0]!);
  assert.deepEqual([prod.upserts.length, prod.deletes.length], [0, 0]);
});

test('snapshots are per group, cached until the next revision', () => {
  const cache = new RuleCache();
  const hub = new SyncHub(cache, 1 << 20);
  cache.apply(1n, [
    { ruleId: 1n, row: row(1n, '10.0.0.0/8') },
    { ruleId: 2n, row: row(2n, '10.1.0.0/16', { role: 'web' }) },
    { ruleId: 3n, row: row(3n, '10.2.0.0/16', { role: 'db' }) },
  ]);
  const web1 = new FakeSession('w1', { role: 'web', host: 'w1' });
  const web2 = new FakeSession('w2', { role: 'web', host: 'w2' });
  const db = new FakeSession('d1', { role: 'db' });
  const s1 = hub.snapshot(web1);
  hub.register(web1);
  const s2 = hub.snapshot(web2);
  assert.equal(s1, s2, 'the same cached snapshot');
  const s3 = hub.snapshot(db);
  const ids = (s: typeof s1) =>
    s.parts
      .flatMap((p) => {
        const m = SyncResponse.decode(p).msg;
        return m?.$case === 'snapshotChunk' ? m.value.rules.map((r) => r.id) : [];
      })
      .sort();
  assert.deepEqual(ids(s1), [1n, 2n]);
  assert.deepEqual(ids(s3), [1n, 3n]);
  hub.publish(2n, new Date(), cache.apply(2n, [{ ruleId: 4n, row: row(4n, '10.3.0.0/16') }]));
  const s4 = hub.snapshot(web2);
  assert.notEqual(s4, s1);
  assert.equal(s4.revision, 2n);
  assert.deepEqual(ids(s4), [1n, 2n, 4n]);
});
