// ExplainService: the deciding rule for an address on a node and the role of
// every other matching rule (allow beats deny; longest prefix counted).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { type DeepPartial, ExplainRequest, MatchRole, Verdict } from '../../proto/gen/fleetwall/v1/explain_service.js';
import { Action, Direction, Mode } from '../../proto/gen/fleetwall/v1/rule.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { rulesApi } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let web: SyncClient;
const id: Record<string, bigint> = {};

const explain = (r: DeepPartial<ExplainRequest>) => unaryCall(cp.clients.explain, 'explain', ExplainRequest.fromPartial(r));

before(async () => {
  pg = await startTestPostgres();
  cp = await startTestControlPlane(await pg.newDatabase());
  const api = rulesApi(cp.clients.rules);
  const made = await api.batchCreate({
    requests: [
      { rule: { cidr: '10.0.0.0/8', action: Action.ACTION_DENY } },
      { rule: { cidr: '10.1.0.0/16', action: Action.ACTION_ALLOW, selector: { role: 'web' } } },
      { rule: { cidr: '10.1.2.0/24', action: Action.ACTION_DENY, mode: Mode.MODE_MONITOR } },
      { rule: { cidr: '10.1.2.3/32', action: Action.ACTION_DENY, direction: Direction.DIRECTION_EGRESS } },
      { rule: { cidr: '10.1.2.0/24', action: Action.ACTION_DENY, selector: { role: 'db' } } },
    ],
  });
  ['deny8', 'allow16web', 'monitor24', 'egress32', 'deny24db'].forEach((k, i) => (id[k] = made.rules[i]!.id));
  web = new SyncClient(cp.target, { nodeName: 'web-1', labels: { role: 'web' } }).connect();
  await web.waitInSync();
});

after(async () => {
  web?.close();
  await cp?.stop();
  await pg?.stop();
});

test('an allow shadows every deny on the node, whatever the prefix lengths', async () => {
  const r = await explain({ address: '10.1.2.3', nodeName: 'web-1' });
  assert.equal(r.verdict, Verdict.VERDICT_PASS);
  assert.equal(r.decidingRule!.id, id.allow16web);
  assert.deepEqual(
    r.matches.map((m) => [m.rule!.id, m.role]),
    [
      [id.monitor24, MatchRole.MATCH_ROLE_SHADOWED_BY_ALLOW],
      [id.allow16web, MatchRole.MATCH_ROLE_DECIDING],
      [id.deny8, MatchRole.MATCH_ROLE_SHADOWED_BY_ALLOW],
    ],
  );
  assert.match(r.explanation, /10\.1\.2\.3 passes on web-1 .*rule \d+ \(allow 10\.1\.0\.0\/16\) allows it; allow beats deny/);
  assert.ok(r.revision > 0n);
});

test('without a node: the rules every node enforces; longest deny decides', async () => {
  const r = await explain({ address: '10.1.2.3' });
  assert.equal(r.verdict, Verdict.VERDICT_WOULD_DROP);
  assert.equal(r.decidingRule!.id, id.monitor24);
  assert.deepEqual(
    r.matches.map((m) => [m.rule!.id, m.role]),
    [
      [id.monitor24, MatchRole.MATCH_ROLE_DECIDING],
      [id.deny8, MatchRole.MATCH_ROLE_SHORTER_PREFIX],
    ],
  );
  assert.match(r.explanation, /would be dropped on every node .*monitor mode/);
  const d = await explain({ address: '10.200.0.1' });
  assert.equal(d.verdict, Verdict.VERDICT_DROP);
  assert.equal(d.decidingRule!.id, id.deny8);
  assert.match(d.explanation, /is dropped on every node .* by rule \d+ \(deny 10\.0\.0\.0\/8\)/);
});

test('direction and no match', async () => {
  const e = await explain({ address: '10.1.2.3', direction: Direction.DIRECTION_EGRESS, nodeName: 'web-1' });
  assert.equal(e.verdict, Verdict.VERDICT_DROP);
  assert.equal(e.decidingRule!.id, id.egress32);
  assert.equal(e.matches.length, 1);
  const none = await explain({ address: '2001:db8::1', nodeName: 'web-1' });
  assert.equal(none.verdict, Verdict.VERDICT_PASS);
  assert.equal(none.decidingRule, undefined);
  assert.deepEqual(none.matches, []);
  assert.match(none.explanation, /no rule matches 2001:db8::1 .* node default applies \(pass\)/);
});

test('bad requests', async () => {
  const a = await callError(explain({ address: '10.0.0.0/8' }));
  assert.equal(a.code, status.INVALID_ARGUMENT);
  assert.equal(errorInfoOf(a)?.reason, 'INVALID_ADDRESS');
  const n = await callError(explain({ address: '10.0.0.1', nodeName: 'nobody' }));
  assert.equal(n.code, status.NOT_FOUND);
  assert.equal(errorInfoOf(n)?.reason, 'NODE_NOT_FOUND');
  const d = await callError(explain({ address: '10.0.0.1', direction: 5 as Direction }));
  assert.equal(errorInfoOf(d)?.reason, 'INVALID_ENUM');
});
