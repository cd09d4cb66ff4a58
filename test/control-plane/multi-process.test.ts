// Several control-plane processes on one database: each serves agents and
// sees the others' writes (LISTEN/NOTIFY); nodes are visible from any of
// them; expiry is swept once; an agent fails over from a killed process to
// another and resumes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { GetNodeRequest } from '../../proto/gen/fleetwall/v1/node_service.js';
import { SyncMode } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import {
  type ChildControlPlane,
  connectClients,
  startChildControlPlane,
  startTestControlPlane,
  type TestControlPlane,
  unaryCall,
} from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { eventually } from '../support/eventually.js';
import { rulesApi, withSql } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

let pg: TestPostgres;
let url: string;
let a: TestControlPlane;
let child: ChildControlPlane;
const agents: SyncClient[] = [];

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  a = await startTestControlPlane(url, { controlPlaneId: 'cp-a', expirySweepIntervalMs: 50 });
  // A second control plane in its own OS process.
  child = await startChildControlPlane(url, {
    FLEETWALL_CONTROL_PLANE_ID: 'cp-b',
    FLEETWALL_EXPIRY_SWEEP_INTERVAL: '50ms',
    FLEETWALL_NODE_FLUSH_INTERVAL: '100ms',
    FLEETWALL_LOG_LEVEL: 'warn',
  });
});

after(async () => {
  for (const g of agents) g.close();
  await a?.stop();
  await child?.kill();
  await pg?.stop();
});

test('a write through one process reaches agents of both; nodes are visible from either', async () => {
  const onA = new SyncClient(a.target, { nodeName: 'agent-on-a' }).connect();
  const onB = new SyncClient(child.target, { nodeName: 'agent-on-b' }).connect();
  agents.push(onA, onB);
  await Promise.all([onA.waitInSync(), onB.waitInSync()]);
  assert.equal(onB.starts[0]!.controlPlaneId, 'cp-b');
  assert.equal(onA.storeId, onB.storeId, 'one store');

  const viaA = await rulesApi(a.clients.rules).create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY } });
  const bClients = connectClients(child.target);
  try {
    const viaB = await rulesApi(bClients.rules).create({ rule: { cidr: '198.51.100.0/24', action: Action.ACTION_DENY } });
    await Promise.all([onA.waitRevision(viaB.revision), onB.waitRevision(viaB.revision)]);
    for (const g of [onA, onB]) {
      assert.ok(g.rules.has(viaA.rule!.id));
      assert.ok(g.rules.has(viaB.rule!.id));
      assert.deepEqual(
        g.deltas.map((d) => d.delta.revision),
        [viaA.revision, viaB.revision],
      );
    }
    await eventually(async () => {
      const n = (await unaryCall(a.clients.nodes, 'getNode', GetNodeRequest.fromPartial({ name: 'agent-on-b' }))).node!;
      assert.equal(n.connected, true);
      assert.equal(n.controlPlaneId, 'cp-b');
      assert.equal(n.appliedRevision, viaB.revision);
    }, 'cp-a to see the node served by cp-b');
    const n = (await unaryCall(bClients.nodes, 'getNode', GetNodeRequest.fromPartial({ name: 'agent-on-a' }))).node!;
    assert.equal(n.controlPlaneId, 'cp-a');
  } finally {
    bClients.close();
  }
});

test('expiring rules are removed once, by one process, and both sets of agents get the delete', async () => {
  const onA = new SyncClient(a.target, { nodeName: 'exp-a' }).connect();
  const onB = new SyncClient(child.target, { nodeName: 'exp-b' }).connect();
  agents.push(onA, onB);
  await Promise.all([onA.waitInSync(), onB.waitInSync()]);
  const made = await rulesApi(a.clients.rules).batchCreate({
    requests: Array.from({ length: 20 }, (_, i) => ({
      rule: { cidr: `100.70.${i}.0/24`, action: Action.ACTION_DENY },
      ttl: { seconds: 1n, nanos: 0 },
    })),
  });
  const ids = made.rules.map((r) => r.id);
  await Promise.all([onA.waitRevision(made.revision), onB.waitRevision(made.revision)]);
  assert.ok(ids.every((id) => onA.rules.has(id) && onB.rules.has(id)));
  await Promise.all([
    onA.waitFor((c) => ids.every((id) => !c.rules.has(id)), 'the expiry deletes on cp-a'),
    onB.waitFor((c) => ids.every((id) => !c.rules.has(id)), 'the expiry deletes on cp-b'),
  ]);
  await withSql(url, async (sql) => {
    const rows = await sql<{ rule_id: bigint; n: number; actor: string }[]>`
      select rule_id, count(*)::int as n, min(actor) as actor from audit_log
      where action = 'rule.expire' and rule_id = any(${ids.map(String)}::bigint[]) group by rule_id`;
    assert.equal(rows.length, 20);
    assert.ok(
      rows.every((r) => r.n === 1 && r.actor === 'system:expiry'),
      'each rule expired exactly once',
    );
    const lag = await sql<{ ms: number }[]>`
      select extract(epoch from (v.commit_time - (a.before->>'expire_time')::timestamptz)) * 1000 as ms
      from audit_log a join revisions v on v.write_id = a.write_id
      where a.action = 'rule.expire' and a.rule_id = any(${ids.map(String)}::bigint[])`;
    assert.ok(
      lag.every((l) => l.ms >= 0),
      'never before its expiry',
    );
  });
});

test('an agent of a killed process fails over to the other and resumes', async () => {
  const g = new SyncClient(child.target, { nodeName: 'failover' }).connect();
  agents.push(g);
  await g.waitInSync();
  const r0 = g.appliedRevision;
  await child.kill();
  await g.waitEnded();
  const r1 = await rulesApi(a.clients.rules).create({ rule: { cidr: '203.0.113.0/24', action: Action.ACTION_DENY } });
  const again = new SyncClient(a.target, { nodeName: 'failover', resumeRevision: r0, storeId: g.storeId }).connect();
  agents.push(again);
  for (const [id, r] of g.rules) again.rules.set(id, r);
  await again.waitInSync();
  assert.equal(again.starts[0]!.mode, SyncMode.SYNC_MODE_RESUME);
  assert.ok(again.rules.has(r1.rule!.id));
  await eventually(async () => {
    const n = (await unaryCall(a.clients.nodes, 'getNode', GetNodeRequest.fromPartial({ name: 'failover' }))).node!;
    assert.equal(n.controlPlaneId, 'cp-a');
    assert.equal(n.connected, true);
  }, 'cp-a to own the node');
});
