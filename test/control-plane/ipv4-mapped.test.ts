// ::ffff:a.b.c.d through the API (issue 16, finding 8): stored and matched
// as the IPv4 address (Go's netip Unmap), over gRPC, HTTP and /manage-ip;
// agents receive a 4-byte prefix; it is a duplicate of the IPv4 rule;
// covers_address and Explain read a mapped address as IPv4 too.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { ExplainRequest, Verdict } from '../../proto/gen/fleetwall/v1/explain_service.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { rulesApi, withSql } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let url: string;
let api: ReturnType<typeof rulesApi>;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url);
  api = rulesApi(cp.clients.rules);
});
after(async () => {
  await cp?.stop();
  await pg?.stop();
});

test('a rule for ::ffff:198.51.100.7 is the rule for 198.51.100.7/32, end to end', async () => {
  const agent = new SyncClient(cp.target, { nodeName: 'mapped' }).connect();
  try {
    await agent.waitInSync();
    const created = await api.create({ rule: { cidr: '::ffff:198.51.100.7', action: Action.ACTION_DENY } });
    assert.equal(created.rule!.cidr, '198.51.100.7/32');
    const id = created.rule!.id.toString();
    const rows = await withSql(
      url,
      (sql) => sql<{ cidr: string; family: number }[]>`select cidr::text, family(cidr) from rules where id = ${id}::bigint`,
    );
    assert.equal(rows[0]!.family, 4, 'stored as IPv4');
    await agent.waitRevision(created.revision);
    const sent = agent.rules.get(created.rule!.id)!;
    assert.deepEqual([...sent.address], [198, 51, 100, 7], 'agents get the 4-byte prefix');
    assert.equal(sent.prefixLength, 32);

    const dup = await callError(api.create({ rule: { cidr: '198.51.100.7/32', action: Action.ACTION_ALLOW } }));
    assert.equal(dup.code, status.ALREADY_EXISTS, 'the IPv4 form is the same rule');
    const prefix = await api.create({ rule: { cidr: '::ffff:203.0.113.0/120', action: Action.ACTION_DENY } });
    assert.equal(prefix.rule!.cidr, '203.0.113.0/24');
    const hostBits = await callError(api.create({ rule: { cidr: '::ffff:203.0.113.9/120', action: Action.ACTION_DENY } }));
    assert.equal(errorInfoOf(hostBits)?.metadata.canonical, '203.0.113.0/24');

    const covers = await api.list({ coversAddress: '::ffff:198.51.100.7' });
    assert.deepEqual(
      covers.rules.map((r) => r.id),
      [created.rule!.id],
    );
    const ex = await unaryCall(cp.clients.explain, 'explain', ExplainRequest.fromPartial({ address: '::ffff:198.51.100.7' }));
    assert.equal(ex.verdict, Verdict.VERDICT_DROP);
    assert.equal(ex.decidingRule?.id, created.rule!.id);

    const res = await fetch(`http://127.0.0.1:${cp.httpPort}/manage-ip`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ action: 'block', ip: '::ffff:192.0.2.44' }),
    });
    const j = (await res.json()) as { ip: string; result: string };
    assert.equal(res.status, 200);
    assert.equal(j.ip, '192.0.2.44/32');
    const again = (await (
      await fetch(`http://127.0.0.1:${cp.httpPort}/manage-ip`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ action: 'block', ip: '192.0.2.44' }),
      })
    ).json()) as { result: string };
    assert.equal(again.result, 'already_blocked');
  } finally {
    agent.close();
  }
});
