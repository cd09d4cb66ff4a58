// Nodes do not accumulate without bound (issue 16, finding 7): ListNodes is
// paginated; an operator deletes a node (gRPC DeleteNode, DELETE
// /v1/nodes/{name}) once its agent is gone, with its counters, and its
// /metrics series go with it; nodes absent longer than
// FLEETWALL_NODE_RETENTION are removed on their own; a NACK repeated for the
// same reason is logged at warn once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { DeleteNodeRequest, GetNodeRequest, ListNodesRequest } from '../../proto/gen/fleetwall/v1/node_service.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { callError, captureLogs, errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { eventually } from '../support/eventually.js';
import { rulesApi, withSql } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

const listNodes = (cp: TestControlPlane, r: Partial<ListNodesRequest>) =>
  unaryCall(cp.clients.nodes, 'listNodes', ListNodesRequest.fromPartial(r));

async function counted(cp: TestControlPlane, name: string, ruleId: bigint): Promise<SyncClient> {
  const c = new SyncClient(cp.target, { nodeName: name, labels: { zone: 'a' } }).connect();
  await c.waitInSync();
  c.report({
    seq: 1n,
    rules: [{ ruleId, packets: 4n, bytes: 400n }],
    interfaces: [
      {
        interface: 'eth0',
        direction: 1,
        counters: { passPackets: 9n, passBytes: 900n, dropPackets: 4n, dropBytes: 400n, wouldDropPackets: 0n, wouldDropBytes: 0n },
      },
    ],
  });
  await c.waitFor((x) => x.counterAcks.includes(1n), 'counter ack');
  return c;
}

describe('pages, delete', () => {
  let cp: TestControlPlane;
  let url: string;
  let ruleId: bigint;
  const agents: SyncClient[] = [];
  before(async () => {
    url = await pg.newDatabase();
    cp = await startTestControlPlane(url, { counterFlushIntervalMs: 100 });
    ruleId = (await rulesApi(cp.clients.rules).create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY } })).rule!.id;
    for (const n of ['n-1', 'n-2', 'n-3', 'n-4', 'n-5']) agents.push(await counted(cp, n, ruleId));
  });
  after(async () => {
    for (const a of agents) a.close();
    await cp?.stop();
  });

  test('ListNodes pages by name; a token is bound to its filters', async () => {
    const names: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const page = await listNodes(cp, { pageSize: 2, pageToken: token });
      assert.ok(page.nodes.length <= 2);
      names.push(...page.nodes.map((n) => n.name));
      token = page.nextPageToken;
      pages++;
    } while (token !== '');
    assert.deepEqual(names, ['n-1', 'n-2', 'n-3', 'n-4', 'n-5']);
    assert.equal(pages, 3);
    const first = await listNodes(cp, { pageSize: 2 });
    const e = await callError(listNodes(cp, { pageSize: 2, pageToken: first.nextPageToken, connectedOnly: true }));
    assert.equal(errorInfoOf(e)?.reason, 'INVALID_PAGE_TOKEN');
    const http = (await (await fetch(`http://127.0.0.1:${cp.httpPort}/v1/nodes?page_size=4`)).json()) as {
      nodes: unknown[];
      nextPageToken: string;
    };
    assert.equal(http.nodes.length, 4);
    const rest = (await (await fetch(`http://127.0.0.1:${cp.httpPort}/v1/nodes?page_size=4&page_token=${http.nextPageToken}`)).json()) as {
      nodes: { name: string }[];
    };
    assert.deepEqual(
      rest.nodes.map((n) => n.name),
      ['n-5'],
    );
  });

  test('a connected node is not deleted; a gone one is, with its counters and /metrics series, audited', async () => {
    const e = await callError(unaryCall(cp.clients.nodes, 'deleteNode', DeleteNodeRequest.fromPartial({ name: 'n-1' })));
    assert.equal(e.code, status.FAILED_PRECONDITION);
    assert.equal(errorInfoOf(e)?.reason, 'NODE_CONNECTED');
    const http409 = await fetch(`http://127.0.0.1:${cp.httpPort}/v1/nodes/n-2`, { method: 'DELETE' });
    assert.equal(http409.status, 409);
    await eventually(
      async () => (await (await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`)).text()).includes('node="n-1"'),
      'n-1 on /metrics',
    );

    agents[0]!.close();
    agents[1]!.close();
    await eventually(
      () => unaryCall(cp.clients.nodes, 'deleteNode', DeleteNodeRequest.fromPartial({ name: 'n-1' })),
      'n-1 deleted once gone',
    );
    await eventually(
      async () => (await fetch(`http://127.0.0.1:${cp.httpPort}/v1/nodes/n-2`, { method: 'DELETE' })).status === 200,
      'n-2 deleted over HTTP',
    );
    for (const n of ['n-1', 'n-2']) {
      const nf = await callError(unaryCall(cp.clients.nodes, 'getNode', GetNodeRequest.fromPartial({ name: n })));
      assert.equal(nf.code, status.NOT_FOUND);
    }
    const left = await withSql(
      url,
      (sql) =>
        sql<{ n: string }[]>`select node_name as n from node_rule_counters union select node_name from node_interface_counters order by 1`,
    );
    assert.deepEqual(
      left.map((r) => r.n),
      ['n-3', 'n-4', 'n-5'],
      'their counters are gone',
    );
    const audited = await withSql(
      url,
      (sql) =>
        sql<{ actor: string; node: string }[]>`
          select actor, before->>'name' as node from audit_log where action = 'node.delete' order by id`,
    );
    assert.deepEqual(
      audited.map((a) => [a.actor, a.node]),
      [
        ['local:loopback', 'n-1'],
        ['local:loopback', 'n-2'],
      ],
      'each delete audited by the principal (the local admin of a loopback control plane), the refused ones not',
    );
    // /metrics reads the stored totals at most every 500 ms.
    const metrics = (await eventually(async () => {
      const t = await (await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`)).text();
      return !t.includes('node="n-1"') && !t.includes('node="n-2"') ? t : false;
    }, 'their series gone from /metrics')) as string;
    assert.ok(metrics.includes('node="n-3"'));
    const missing = await callError(unaryCall(cp.clients.nodes, 'deleteNode', DeleteNodeRequest.fromPartial({ name: 'n-1' })));
    assert.equal(missing.code, status.NOT_FOUND);
  });
});

describe('retention, NACK logging', () => {
  let cp: TestControlPlane;
  let url: string;
  const logs = captureLogs();
  before(async () => {
    url = await pg.newDatabase();
    cp = await startTestControlPlane(
      url,
      { nodeRetentionMs: 1000, nodeGcIntervalMs: 200, counterFlushIntervalMs: 100 },
      { logger: logs.logger },
    );
  });
  after(() => cp?.stop());

  test('a node absent longer than the retention is removed with its counters; a connected one stays', async () => {
    const ruleId = (await rulesApi(cp.clients.rules).create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY } })).rule!.id;
    const stays = await counted(cp, 'stays', ruleId);
    const leaves = await counted(cp, 'leaves', ruleId);
    try {
      await eventually(
        () => withSql(url, async (sql) => (await sql`select 1 from node_rule_counters where node_name = 'leaves'`).length === 1),
        'its counters written',
      );
      leaves.close();
      await eventually(async () => (await listNodes(cp, {})).nodes.every((n) => n.name !== 'leaves'), 'the absent node removed', 30_000);
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(
        (await listNodes(cp, {})).nodes.map((n) => n.name),
        ['stays'],
        'the connected node is kept past the retention',
      );
      const rows = await withSql(url, (sql) => sql`select 1 from node_rule_counters where node_name = 'leaves'`);
      assert.equal(rows.length, 0);
      assert.ok(logs.lines.some((l) => l.msg === 'removed nodes absent longer than the retention'));
    } finally {
      stays.close();
    }
  });

  test('a NACK repeated for the same reason is logged at warn once; a new reason again', async () => {
    const c = new SyncClient(cp.target, { nodeName: 'nacker', autoAck: false }).connect();
    try {
      await c.waitInSync();
      const warns = () => logs.lines.filter((l) => l.msg === 'agent NACKed a revision' && l.level === 40 && l.node === 'nacker').length;
      for (let r = 1n; r <= 5n; r++) c.nack(r, { code: 8, message: 'ingress IPv4 table full: 10 of 10', details: [] });
      await eventually(
        () => logs.lines.filter((l) => l.msg === 'agent NACKed a revision' && l.node === 'nacker').length === 5,
        'five NACKs seen',
      );
      assert.equal(warns(), 1);
      c.nack(6n, { code: 3, message: 'rule 7 cannot be applied', details: [] });
      await eventually(() => warns() === 2, 'the new reason logged');
    } finally {
      c.close();
    }
  });
});
