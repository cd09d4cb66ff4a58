// The HTTP/JSON API on a real control plane (real Postgres, port 0): the
// /v1 routes served by the same handlers as gRPC, and the product brief's
// /manage-ip call, including every bad input the issue names.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { CATALOGUE } from '../../control-plane/src/errors/catalogue.js';
import { httpStatusOf } from '../../control-plane/src/http/router.js';

const exec = promisify(execFile);
let pg: TestPostgres;
let cp: TestControlPlane;
let base: string;

before(async () => {
  pg = await startTestPostgres();
  cp = await startTestControlPlane(await pg.newDatabase());
  base = `http://127.0.0.1:${cp.httpPort}`;
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
});

interface Reply {
  status: number;
  body: Record<string, any>;
}

async function call(method: string, path: string, body?: unknown, contentType: string | null = 'application/json'): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (contentType !== null) headers['content-type'] = contentType;
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, `${method} ${path} answers JSON`);
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function ruleCount(): Promise<number> {
  const r = await call('GET', '/v1/rules?page_size=1000');
  assert.equal(r.status, 200);
  return Number(r.body.totalSize ?? 0);
}

test('the curl call from the product brief blocks an address, as written', async () => {
  // curl --location 'http://localhost:8080/manage-ip' --header 'Content-Type: application/json' --data '{"action": "block", "ip": "192.168.0.1"}'
  const { stdout } = await exec('curl', [
    '--silent',
    '--show-error',
    '--location',
    `http://localhost:${cp.httpPort}/manage-ip`,
    '--header',
    'Content-Type: application/json',
    '--data',
    '{"action": "block", "ip": "192.168.0.1"}',
  ]);
  const out = JSON.parse(stdout);
  assert.equal(out.ok, true);
  assert.equal(out.result, 'blocked');
  assert.equal(out.ip, '192.168.0.1/32');
  assert.equal(out.rule.cidr, '192.168.0.1/32');
  assert.equal(out.rule.action, 'ACTION_DENY');
  assert.equal(out.rule.direction, 'DIRECTION_INGRESS');
  assert.match(out.revision, /^[1-9][0-9]*$/);

  const got = await call('GET', `/v1/rules/${out.rule.id}`);
  assert.equal(got.status, 200);
  assert.equal(got.body.rule.cidr, '192.168.0.1/32');
  const covering = await call('GET', '/v1/rules?covers_address=192.168.0.1');
  assert.deepEqual(
    covering.body.rules.map((r: any) => r.id),
    [out.rule.id],
  );

  // Idempotent: blocking again reports the existing rule, stores nothing new.
  const before = await ruleCount();
  const again = await call('POST', '/manage-ip', { action: 'block', ip: '192.168.0.1' });
  assert.equal(again.status, 200);
  assert.equal(again.body.result, 'already_blocked');
  assert.equal(again.body.rule.id, out.rule.id);
  assert.equal(await ruleCount(), before);
});

test('/manage-ip whitelist turns a block into an allow; unblock and block then say why not', async () => {
  const blocked = await call('POST', '/manage-ip', { action: 'block', ip: '198.51.100.7', ttl: '1h', comment: 'brute force' });
  assert.equal(blocked.status, 200);
  assert.equal(blocked.body.rule.comment, 'brute force');
  assert.ok(blocked.body.rule.expireTime, 'ttl sets an expiry');

  const wl = await call('POST', '/manage-ip', { action: 'whitelist', ip: '198.51.100.7' });
  assert.equal(wl.status, 200);
  assert.equal(wl.body.result, 'changed_to_allow');
  assert.equal(wl.body.rule.id, blocked.body.rule.id);
  assert.equal(wl.body.rule.action, 'ACTION_ALLOW');

  const unblock = await call('POST', '/manage-ip', { action: 'unblock', ip: '198.51.100.7' });
  assert.equal(unblock.status, 404);
  assert.equal(unblock.body.reason, 'NOT_BLOCKED');

  const block = await call('POST', '/manage-ip', { action: 'block', ip: '198.51.100.7' });
  assert.equal(block.status, 409);
  assert.equal(block.body.reason, 'DUPLICATE_RULE');
  assert.match(block.body.message, new RegExp(`allowlisted by rule ${blocked.body.rule.id}`));

  const allowNew = await call('POST', '/manage-ip', { action: 'allow', ip: '2001:db8:aa::/48' });
  assert.equal(allowNew.status, 200);
  assert.equal(allowNew.body.result, 'allowed');
  assert.equal(allowNew.body.rule.cidr, '2001:db8:aa::/48');
});

test('/manage-ip unblock removes the rule; a covering rule is named when there is no exact one', async () => {
  const host = await call('POST', '/manage-ip', { action: 'block', ip: '203.0.113.9' });
  const un = await call('POST', '/manage-ip', { action: 'unblock', ip: '203.0.113.9' });
  assert.equal(un.status, 200);
  assert.deepEqual(Object.keys(un.body).sort(), ['action', 'ip', 'ok', 'result', 'revision', 'rule'], 'the documented shape');
  assert.equal(un.body.result, 'unblocked');
  assert.equal(un.body.rule.id, host.body.rule.id);
  assert.equal((await call('GET', `/v1/rules/${host.body.rule.id}`)).status, 404);

  const net = await call('POST', '/manage-ip', { action: 'block', ip: '203.0.113.0/24' });
  const again = await call('POST', '/manage-ip', { action: 'unblock', ip: '203.0.113.9' });
  assert.equal(again.status, 404);
  assert.equal(again.body.reason, 'NOT_BLOCKED');
  assert.match(again.body.message, new RegExp(`covered by rule ${net.body.rule.id} \\(203\\.0\\.113\\.0/24\\)`));
  assert.equal(again.body.metadata.covering_rule_ids, net.body.rule.id);
});

test('/manage-ip unblock of an address a broader deny still covers answers still_blocked and names that rule', async () => {
  // As a new user found it: the /32 is removed, but the /26 keeps dropping the address's packets.
  const net = await call('POST', '/manage-ip', { action: 'block', ip: '198.51.100.64/26' });
  const host = await call('POST', '/manage-ip', { action: 'block', ip: '198.51.100.77' });
  assert.equal(host.body.result, 'blocked');
  const un = await call('POST', '/manage-ip', { action: 'unblock', ip: '198.51.100.77' });
  assert.equal(un.status, 200);
  assert.equal(un.body.ok, true);
  assert.equal(un.body.result, 'still_blocked', 'not "unblocked": its packets still drop');
  assert.equal(un.body.ip, '198.51.100.77/32');
  assert.equal(un.body.rule.id, host.body.rule.id, "the address's own rule is the one removed");
  assert.match(un.body.revision, /^[1-9][0-9]*$/);
  assert.deepEqual(
    un.body.coveringRules.map((r: any) => [r.id, r.cidr, r.action]),
    [[net.body.rule.id, '198.51.100.64/26', 'ACTION_DENY']],
  );
  assert.equal((await call('GET', `/v1/rules/${host.body.rule.id}`)).status, 404, 'the /32 is gone');
  const explain = await call('GET', '/v1/explain?address=198.51.100.77');
  assert.equal(explain.body.verdict, 'VERDICT_DROP', 'and the address is indeed still dropped');
  assert.equal(explain.body.decidingRule.id, net.body.rule.id);
});

test('/manage-ip bad input: 4xx with a JSON error that says what is wrong, nothing stored', async () => {
  const before = await ruleCount();
  const cases: Array<[string, () => Promise<Reply>, number, string, RegExp]> = [
    [
      'unknown action',
      () => call('POST', '/manage-ip', { action: 'ban', ip: '10.9.9.9' }),
      400,
      'UNKNOWN_ACTION',
      /"ban" is not one of block, allow, whitelist, unblock/,
    ],
    ['bad ip', () => call('POST', '/manage-ip', { action: 'block', ip: '999.1.1.1' }), 400, 'INVALID_CIDR', /999\.1\.1\.1/],
    ['host bits', () => call('POST', '/manage-ip', { action: 'block', ip: '10.1.2.3/8' }), 400, 'HOST_BITS_SET', /10\.0\.0\.0\/8/],
    ['missing ip', () => call('POST', '/manage-ip', { action: 'block' }), 400, 'MISSING_FIELD', /missing field "ip"/],
    ['missing action', () => call('POST', '/manage-ip', { ip: '10.9.9.9' }), 400, 'MISSING_FIELD', /missing field "action"/],
    ['ip not a string', () => call('POST', '/manage-ip', { action: 'block', ip: 167772161 }), 400, 'INVALID_CIDR', /must be a string/],
    [
      'wrong content type',
      () => call('POST', '/manage-ip', '{"action":"block","ip":"10.9.9.9"}', 'text/plain'),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
      /Content-Type: application\/json/,
    ],
    [
      'no content type',
      () => call('POST', '/manage-ip', 'action=block&ip=10.9.9.9', null),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
      /Content-Type: application\/json/,
    ],
    ['not JSON', () => call('POST', '/manage-ip', '{"action": block}'), 400, 'INVALID_JSON', /not JSON/],
    ['JSON array', () => call('POST', '/manage-ip', '[1,2]'), 400, 'INVALID_JSON', /JSON object/],
    ['bad ttl', () => call('POST', '/manage-ip', { action: 'block', ip: '10.9.9.9', ttl: 'soon' }), 400, 'INVALID_TTL', /not a duration/],
  ];
  for (const [name, run, status, reason, message] of cases) {
    const r = await run();
    assert.equal(r.status, status, `${name}: status`);
    assert.equal(r.body.reason, reason, `${name}: reason`);
    assert.match(r.body.message, message, `${name}: message`);
  }
  assert.equal(await ruleCount(), before, 'nothing stored');
});

test('one bad body, one reason, on every route that reads a body; every error is from the catalogue', async () => {
  const rule = await call('POST', '/v1/rules', { rule: { cidr: '100.70.0.0/16', action: 'ACTION_DENY' } });
  assert.equal(rule.status, 200);
  const routes: Array<[string, string]> = [
    ['POST', '/v1/rules'],
    ['PATCH', `/v1/rules/${rule.body.rule.id}`],
    ['POST', '/manage-ip'],
  ];
  const bodies: Array<[string, string, string | null, number, string]> = [
    ['not JSON', '{"action": block}', 'application/json', 400, 'INVALID_JSON'],
    ['a JSON array', '[{"action": "block"}]', 'application/json', 400, 'INVALID_JSON'],
    ['JSON null', 'null', 'application/json', 400, 'INVALID_JSON'],
    ['a JSON string', '"block 10.9.9.9"', 'application/json', 400, 'INVALID_JSON'],
    ['a JSON number', '42', 'application/json; charset=utf-8', 400, 'INVALID_JSON'],
    ['form data', 'action=block&ip=10.9.9.9', 'application/x-www-form-urlencoded', 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['JSON as text/plain', '{"action":"block","ip":"10.9.9.9"}', 'text/plain', 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['no content type', '{"action":"block","ip":"10.9.9.9"}', null, 415, 'UNSUPPORTED_MEDIA_TYPE'],
  ];
  const before = await ruleCount();
  for (const [name, body, type, status, reason] of bodies) {
    for (const [method, path] of routes) {
      const r = await call(method, path, body, type);
      assert.equal(r.body.reason, reason, `${name} to ${method} ${path}: reason`);
      assert.equal(r.status, status, `${name} to ${method} ${path}: status`);
      assert.equal(r.body.code, CATALOGUE[reason as keyof typeof CATALOGUE].code, `${name} to ${method} ${path}: gRPC code`);
    }
  }
  assert.equal(await ruleCount(), before, 'nothing stored');
  assert.deepEqual((await call('GET', `/v1/rules/${rule.body.rule.id}`)).body.rule, rule.body.rule, 'nothing changed');

  // Every error the HTTP API answers, the router's own included, carries a catalogue reason and that reason's status.
  const errors: Reply[] = [
    await call('GET', '/v1/no-such-route'),
    await call('DELETE', '/manage-ip'),
    await call('PUT', '/v1/rules'),
    await call('GET', '/v1/rules/not-an-id'),
    await call('GET', '/v1/rules?page_token=junk'),
    await call('GET', '/v1/rules?direction=sideways'),
    await call('GET', '/v1/nodes/nobody'),
    await call('POST', '/manage-ip', { action: 'unblock', ip: '100.71.0.1' }),
    await call('POST', '/manage-ip', { action: 'block', ip: '100.70.0.0/16' }).then(() =>
      call('POST', '/v1/rules', { cidr: '100.70.0.0/16', action: 'ACTION_DENY' }),
    ),
  ];
  for (const r of errors) {
    assert.ok(Object.hasOwn(CATALOGUE, r.body.reason), `${r.body.reason} is in the catalogue`);
    assert.equal(r.status, httpStatusOf(r.body.reason), `${r.body.reason}: its catalogue status`);
    assert.equal(typeof r.body.message, 'string');
  }
  assert.deepEqual(
    errors.map((r) => [r.status, r.body.reason]),
    [
      [404, 'ROUTE_NOT_FOUND'],
      [405, 'METHOD_NOT_ALLOWED'],
      [405, 'METHOD_NOT_ALLOWED'],
      [400, 'INVALID_QUERY'],
      [400, 'INVALID_PAGE_TOKEN'],
      [400, 'INVALID_ENUM'],
      [404, 'NODE_NOT_FOUND'],
      [404, 'NOT_BLOCKED'],
      [409, 'DUPLICATE_RULE'],
    ],
  );
});

test('/v1 routes: create, list with filters, get, patch, delete, nodes, counters, explain', async () => {
  const created = await call('POST', '/v1/rules', {
    rule: { cidr: '100.64.0.0/10', action: 'ACTION_DENY', mode: 'MODE_MONITOR', selector: { role: 'web' } },
    ttl: '600s',
  });
  assert.equal(created.status, 200);
  const id = created.body.rule.id as string;
  assert.equal(created.body.rule.mode, 'MODE_MONITOR');
  assert.deepEqual(created.body.rule.selector, { role: 'web' });
  const expiresIn = Date.parse(created.body.rule.expireTime) - Date.now();
  assert.ok(
    expiresIn > 590_000 && expiresIn <= 600_000,
    `ttl "600s" (proto3 JSON duration) sets the expiry 600 s out, got ${expiresIn} ms`,
  );
  const badTtl = await call('POST', '/v1/rules', { rule: { cidr: '100.67.0.0/16', action: 'ACTION_DENY' }, ttl: '10 minutes' });
  assert.equal(badTtl.status, 400);
  assert.equal(badTtl.body.reason, 'INVALID_TTL');

  const bare = await call('POST', '/v1/rules', { cidr: '2001:db8:5::/48', action: 'ACTION_ALLOW', direction: 'DIRECTION_EGRESS' });
  assert.equal(bare.status, 200, JSON.stringify(bare.body)); // bare Rule body
  assert.equal(bare.body.rule.direction, 'DIRECTION_EGRESS');

  const monitorAllow = await call('POST', '/v1/rules', { cidr: '100.65.0.0/16', action: 'ACTION_ALLOW', mode: 'MODE_MONITOR' });
  assert.equal(monitorAllow.status, 400);
  assert.equal(monitorAllow.body.reason, 'MONITOR_ON_ALLOW');
  const unmatchable = await call('POST', '/v1/rules', { cidr: '100.66.0.0/16', action: 'ACTION_DENY', selector: { 'team name': 'x' } });
  assert.equal(unmatchable.status, 400, 'a selector no node label could ever match is refused');
  assert.equal(unmatchable.body.reason, 'INVALID_SELECTOR');
  assert.match(unmatchable.body.message, /letters, digits/);
  const badSelectorParam = await call('GET', '/v1/rules?selector=role');
  assert.equal(badSelectorParam.status, 400);
  assert.match(badSelectorParam.body.message, /not key=value/);
  const badEnum = await call('POST', '/v1/rules', { cidr: '100.66.0.0/16', action: 'ACTION_EXPLODE' });
  assert.equal(badEnum.status, 400);
  const dup = await call('POST', '/v1/rules', { rule: { cidr: '100.64.0.0/10', action: 'ACTION_ALLOW', selector: { role: 'web' } } });
  assert.equal(dup.status, 409);
  assert.match(dup.body.message, new RegExp(id));

  const bySelector = await call('GET', '/v1/rules?selector=role=web&action=deny');
  assert.deepEqual(
    bySelector.body.rules.map((r: any) => r.id),
    [id],
  );
  const byDirection = await call('GET', '/v1/rules?direction=egress');
  assert.ok(byDirection.body.rules.every((r: any) => r.direction === 'DIRECTION_EGRESS'));
  assert.ok(byDirection.body.rules.some((r: any) => r.id === bare.body.rule.id));
  const badFilter = await call('GET', '/v1/rules?action=maybe');
  assert.equal(badFilter.status, 400);
  assert.equal(badFilter.body.reason, 'INVALID_ENUM');

  const patched = await call('PATCH', `/v1/rules/${id}`, { comment: 'carrier-grade NAT' });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  assert.equal(patched.body.rule.comment, 'carrier-grade NAT');
  assert.equal(patched.body.rule.mode, 'MODE_MONITOR', 'fields outside the mask are kept');

  const explain = await call('GET', '/v1/explain?address=2001:db8:5::1&direction=egress');
  assert.equal(explain.status, 200);
  assert.equal(explain.body.verdict, 'VERDICT_PASS');
  assert.equal(explain.body.decidingRule.id, bare.body.rule.id);

  const nodes = await call('GET', '/v1/nodes');
  assert.equal(nodes.status, 200);
  assert.ok(Array.isArray(nodes.body.nodes ?? []));
  const counters = await call('GET', '/v1/counters?top_rules=5');
  assert.equal(counters.status, 200);
  assert.ok(counters.body.snapshot, 'a counter snapshot');
  assert.equal((await call('GET', '/v1/nodes/nope')).status, 404);

  const del = await call('DELETE', `/v1/rules/${id}`);
  assert.equal(del.status, 200);
  assert.match(del.body.revision, /^[1-9][0-9]*$/);
  const gone = await call('GET', `/v1/rules/${id}`);
  assert.equal(gone.status, 404);
  assert.equal(gone.body.reason, 'RULE_NOT_FOUND');
  assert.equal((await call('GET', '/v1/rules/abc')).status, 400);
  assert.equal((await call('PUT', '/v1/rules')).status, 405);
});
