// Capacity at write time (issue 16, finding 6): agents report how many
// prefixes each kernel table holds (Hello.capacity_per_table, stored per
// node); a create, batch, import or update that would put more rules in a
// table of some node than it holds is refused - FAILED_PRECONDITION
// CAPACITY_EXCEEDED (HTTP 409) naming the node, the table and the numbers -
// and nothing is stored. Tables are direction x family, as the agent's.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { GetNodeRequest } from '../../proto/gen/fleetwall/v1/node_service.js';
import { Action, Direction } from '../../proto/gen/fleetwall/v1/rule.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { rulesApi, storeState } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let url: string;
let api: ReturnType<typeof rulesApi>;
let small: SyncClient;
let big: SyncClient;
let unreported: SyncClient;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url);
  api = rulesApi(cp.clients.rules);
  small = new SyncClient(cp.target, { nodeName: 'small-1', labels: { role: 'web' } }).connect({ capacityPerTable: 3n });
  big = new SyncClient(cp.target, { nodeName: 'big-1', labels: { role: 'db' } }).connect({ capacityPerTable: 100n });
  unreported = new SyncClient(cp.target, { nodeName: 'old-agent', labels: { role: 'web' } }).connect({ capacityPerTable: 0n });
  await Promise.all([small, big, unreported].map((c) => c.waitInSync()));
});

after(async () => {
  for (const c of [small, big, unreported]) c?.close();
  await cp?.stop();
  await pg?.stop();
});

/** Waits until every agent has the revision (the capacity check reads the rule cache the feed keeps). */
async function settled(revision: bigint): Promise<void> {
  await Promise.all([small, big, unreported].map((c) => c.waitRevision(revision)));
}

async function refused(what: string, call: () => Promise<unknown>, node: string, table: string): Promise<void> {
  const before = await storeState(url);
  const e = await callError(call());
  assert.equal(e.code, status.FAILED_PRECONDITION, `${what}: ${status[e.code]} ${e.details}`);
  const info = errorInfoOf(e)!;
  assert.equal(info.reason, 'CAPACITY_EXCEEDED', what);
  assert.equal(info.metadata.node, node, what);
  assert.equal(info.metadata.table, table, what);
  assert.match(e.details, new RegExp(`${node}'s ${table} table holds \\d+`), what);
  assert.deepEqual(await storeState(url), before, `${what}: nothing stored`);
}

const web = { role: 'web' };

test('a node reports its capacity; GetNode shows it', async () => {
  const n = await unaryCall(cp.clients.nodes, 'getNode', GetNodeRequest.fromPartial({ name: 'small-1' }));
  assert.equal(n.node!.capacityPerTable, 3n);
});

test('creates up to the smallest selected table; the next one is refused naming the node and numbers', async () => {
  let last = 0n;
  for (const cidr of ['192.0.2.1', '192.0.2.2', '192.0.2.3'])
    last = (await api.create({ rule: { cidr, action: Action.ACTION_DENY, selector: web } })).revision;
  await settled(last);
  await refused(
    'a 4th web rule',
    () => api.create({ rule: { cidr: '192.0.2.4', action: Action.ACTION_DENY, selector: web } }),
    'small-1',
    'ingress IPv4',
  );
  const e = await callError(api.create({ rule: { cidr: '192.0.2.4', action: Action.ACTION_DENY, selector: web } }));
  assert.match(e.details, /holds 3 prefixes.*3 rules selecting it are there already and this change adds 1 \(4 > 3\)/);
  await refused(
    'a fleet-wide rule',
    () => api.create({ rule: { cidr: '198.51.100.0/24', action: Action.ACTION_DENY } }),
    'small-1',
    'ingress IPv4',
  );
  // Other tables, other nodes: room.
  const v6 = await api.create({ rule: { cidr: '2001:db8::/48', action: Action.ACTION_DENY, selector: web } });
  const eg = await api.create({
    rule: { cidr: '192.0.2.4', action: Action.ACTION_DENY, selector: web, direction: Direction.DIRECTION_EGRESS },
  });
  const db = await api.create({ rule: { cidr: '192.0.2.5', action: Action.ACTION_DENY, selector: { role: 'db' } } });
  await settled(db.revision > eg.revision ? db.revision : eg.revision);
  assert.ok(v6.rule && eg.rule && db.rule);
});

test('batch create, update and import are checked too, and over HTTP it is a 409', async () => {
  await refused(
    'a batch with one web rule',
    () =>
      api.batchCreate({
        requests: [
          { rule: { cidr: '192.0.2.6', action: Action.ACTION_DENY, selector: { role: 'db' } } },
          { rule: { cidr: '192.0.2.7', action: Action.ACTION_DENY, selector: web } },
        ],
      }),
    'small-1',
    'ingress IPv4',
  );
  const db = (await api.list({ selector: { role: 'db' } })).rules[0]!;
  await refused(
    'an update moving a db rule to web',
    () => api.update({ rule: { id: db.id, selector: web }, updateMask: ['selector'] }),
    'small-1',
    'ingress IPv4',
  );
  const ok = await api.update({ rule: { id: db.id, comment: 'still fine' }, updateMask: ['comment'] });
  await settled(ok.revision);
  await refused(
    'an import for web',
    () => api.import({ action: Action.ACTION_DENY, selector: web }, [['203.0.113.1', '203.0.113.2']]),
    'small-1',
    'ingress IPv4',
  );
  const dup = await api.import({ action: Action.ACTION_DENY, selector: web }, [['192.0.2.1', '192.0.2.2']]);
  assert.equal(dup.added, 0n, 'an import of rules that exist adds nothing and needs no room');
  const res = await fetch(`http://127.0.0.1:${cp.httpPort}/v1/rules`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ cidr: '192.0.2.9', action: 'ACTION_DENY', selector: web }),
  });
  assert.equal(res.status, 409);
  assert.equal(((await res.json()) as { reason: string }).reason, 'CAPACITY_EXCEEDED');
});

test('room again once a rule is deleted', async () => {
  const one = (await api.list({ selector: web, direction: Direction.DIRECTION_INGRESS, text: '192.0.2.1' })).rules[0]!;
  const del = await api.delete(one.id);
  await settled(del.revision);
  const again = await api.create({ rule: { cidr: '192.0.2.8', action: Action.ACTION_DENY, selector: web } });
  assert.ok(again.rule);
});
