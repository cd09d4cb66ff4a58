// A non-loopback bind comes up with TLS and API tokens on both ports (issue
// 15 "what it must show"): a plaintext client fails, no token gives
// UNAUTHENTICATED / 401, a viewer's write gives PERMISSION_DENIED / 403 and
// stores nothing, an operator's write works and is audited under the
// token's principal, and a revoked token is refused within a second by
// another control-plane process, on gRPC and on HTTP. The control plane
// binds 0.0.0.0 (port 0); every connection goes to 127.0.0.1.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { Action } from '../../../proto/gen/fleetwall/v1/rule.js';
import { CreateRuleRequest, GetRuleRequest, ListRulesRequest } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { ListAuditEventsRequest } from '../../../proto/gen/fleetwall/v1/audit_service.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres.js';
import { callError, connectClients, errorInfoOf, startChildControlPlane, unaryCall } from '../../support/control-plane.js';
import { storeState, withSql } from '../../support/rule-fixtures.js';
import { httpsJson, startTlsControlPlane, type TlsControlPlane } from '../../support/tls-control-plane.js';

let pg: TestPostgres;
let url: string;
let t: TlsControlPlane;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  t = await startTlsControlPlane(url);
});

after(async () => {
  await t?.stop();
  await pg?.stop();
});

const mode = (path: string) => statSync(path).mode & 0o777;

test('binding 0.0.0.0 turns TLS and tokens on; the CA, server key and first admin token are on disk with the right modes', () => {
  assert.equal(t.cp.cp.security, 'tls');
  assert.equal(mode(join(t.dataDir, 'pki/ca.crt')), 0o644, 'ca.crt readable');
  assert.equal(mode(join(t.dataDir, 'pki/server.crt')), 0o644);
  assert.equal(mode(join(t.dataDir, 'pki/ca.key')), 0o600, 'keys 0600');
  assert.equal(mode(join(t.dataDir, 'pki/server.key')), 0o600);
  assert.equal(mode(join(t.dataDir, 'admin.token')), 0o600, 'the admin token 0600');
  assert.match(t.adminToken, /^fwt_[A-Za-z0-9_-]{43}$/);
});

test('a plaintext client fails on both ports', async () => {
  const plain = connectClients(`127.0.0.1:${t.cp.grpcPort}`);
  try {
    const e = await callError(unaryCall(plain.rules, 'listRules', ListRulesRequest.fromPartial({ pageSize: 1 })));
    assert.equal(e.code, status.UNAVAILABLE, `plaintext gRPC to a TLS port: ${e.message}`);
  } finally {
    plain.close();
  }
  await assert.rejects(httpsJson(t.cp.httpPort, 'GET', '/v1/rules'), 'plaintext HTTP to a TLS port');
  // /healthz stays open for probes, over TLS.
  const h = await httpsJson(t.cp.httpPort, 'GET', '/healthz', { ca: t.ca });
  assert.equal(h.status, 200);
  assert.equal(h.body.security, 'tls');
});

test('no token: UNAUTHENTICATED / 401 with WWW-Authenticate: Bearer; nothing stored', async () => {
  const before = await storeState(url);
  const anon = t.clients();
  const e = await callError(
    unaryCall(anon.rules, 'createRule', CreateRuleRequest.fromPartial({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY } })),
  );
  assert.equal(e.code, status.UNAUTHENTICATED);
  assert.equal(errorInfoOf(e)?.reason, 'CREDENTIALS_REQUIRED');
  assert.match(e.details, /authorization: Bearer/);
  const r = await httpsJson(t.cp.httpPort, 'POST', '/v1/rules', { ca: t.ca, body: { cidr: '192.0.2.0/24', action: 'ACTION_DENY' } });
  assert.equal(r.status, 401);
  assert.equal(r.headers['www-authenticate'], 'Bearer realm="fleetwall"');
  assert.equal(r.body.reason, 'CREDENTIALS_REQUIRED');
  const reads = await httpsJson(t.cp.httpPort, 'GET', '/v1/rules', { ca: t.ca });
  assert.equal(reads.status, 401, 'reads need a token too');
  const bad = await httpsJson(t.cp.httpPort, 'GET', '/v1/rules', { ca: t.ca, token: `fwt_${'A'.repeat(43)}` });
  assert.equal(bad.status, 401);
  assert.equal(bad.body.reason, 'TOKEN_UNKNOWN');
  const e2 = await callError(unaryCall(t.clients('not-a-token').rules, 'getRule', GetRuleRequest.fromPartial({ id: 1n })));
  assert.equal(e2.code, status.UNAUTHENTICATED);
  assert.equal(errorInfoOf(e2)?.reason, 'TOKEN_UNKNOWN');
  assert.deepEqual(await storeState(url), before, 'nothing stored');
});

test("a viewer reads but its write is PERMISSION_DENIED / 403 and stores nothing; an operator's write works", async () => {
  const viewer = await t.makeToken('viewer', 'dash');
  const operator = await t.makeToken('operator', 'ci');
  const v = t.clients(viewer.token);
  const listed = await unaryCall(v.rules, 'listRules', ListRulesRequest.fromPartial({ pageSize: 10 }));
  assert.ok(listed.revision >= 0n);
  const before = await storeState(url);
  const e = await callError(
    unaryCall(v.rules, 'createRule', CreateRuleRequest.fromPartial({ rule: { cidr: '198.51.100.0/24', action: Action.ACTION_DENY } })),
  );
  assert.equal(e.code, status.PERMISSION_DENIED);
  const info = errorInfoOf(e);
  assert.equal(info?.reason, 'ROLE_TOO_LOW');
  assert.equal(info?.metadata.required_role, 'operator');
  assert.equal(info?.metadata.role, 'viewer');
  assert.match(e.details, /RuleService\/CreateRule needs the operator role; token:\d+\/dash has viewer/);
  const r = await httpsJson(t.cp.httpPort, 'POST', '/manage-ip', {
    ca: t.ca,
    token: viewer.token,
    body: { action: 'block', ip: '198.51.100.9' },
  });
  assert.equal(r.status, 403);
  assert.equal(r.body.reason, 'ROLE_TOO_LOW');
  const tokens = await httpsJson(t.cp.httpPort, 'GET', '/v1/tokens', { ca: t.ca, token: operator.token });
  assert.equal(tokens.status, 403, 'tokens are for admins');
  assert.deepEqual(await storeState(url), before, 'nothing stored');

  const o = t.clients(operator.token);
  const made = await unaryCall(
    o.rules,
    'createRule',
    CreateRuleRequest.fromPartial({ rule: { cidr: '198.51.100.0/24', action: Action.ACTION_DENY } }),
    'cli:carol',
  );
  assert.equal(made.rule!.createdBy, `token:${operator.id}/ci`, 'created_by: the token, not the header');
  const viaHttp = await httpsJson(t.cp.httpPort, 'POST', '/manage-ip', {
    ca: t.ca,
    token: operator.token,
    body: { action: 'block', ip: '203.0.113.9' },
    headers: { 'x-fleetwall-actor': 'ticket-42' },
  });
  assert.equal(viaHttp.status, 200, JSON.stringify(viaHttp.body));
  assert.equal(viaHttp.body.rule.createdBy, `token:${operator.id}/ci`);
  await withSql(url, async (sql) => {
    const rows = await sql<{ actor: string; note: string }[]>`
      select actor, note from audit_log where action = 'rule.create' order by id`;
    assert.deepEqual(
      rows.map((x) => [x.actor, x.note]),
      [
        [`token:${operator.id}/ci`, 'cli:carol'],
        [`token:${operator.id}/ci`, 'ticket-42'],
      ],
    );
  });
  // The audit log is readable by a viewer, over gRPC and HTTP, with the principal.
  const audit = await unaryCall(v.audit, 'listAuditEvents', ListAuditEventsRequest.fromPartial({ action: 'rule.' }));
  assert.deepEqual(
    audit.events.map((ev) => [ev.actor, ev.note, ev.action]),
    [
      [`token:${operator.id}/ci`, 'ticket-42', 'rule.create'],
      [`token:${operator.id}/ci`, 'cli:carol', 'rule.create'],
    ],
  );
  const viaHttpAudit = await httpsJson(t.cp.httpPort, 'GET', '/v1/audit?action=token.', { ca: t.ca, token: viewer.token });
  assert.equal(viaHttpAudit.status, 200);
  assert.ok(
    viaHttpAudit.body.events.some(
      (ev: { actor: string; afterJson: string }) => ev.actor.startsWith('token:') && /"name":"dash"/.test(ev.afterJson),
    ),
    'token creation is audited under the admin principal',
  );
  // Failures are counted by reason.
  const m = await httpsJson(t.cp.httpPort, 'GET', '/metrics', { ca: t.ca, token: viewer.token });
  assert.equal(m.status, 200);
  assert.match(String(m.body), /fleetwall_auth_failures_total\{reason="ROLE_TOO_LOW"[^}]*\} [1-9]/);
  assert.match(String(m.body), /fleetwall_auth_failures_total\{reason="CREDENTIALS_REQUIRED"[^}]*\} [1-9]/);
});

test('a revoked token is refused within a second by another control-plane process, on gRPC and on HTTP', async (tc) => {
  // A second process (its own OS process) on the same database and data directory (the same CA).
  const child = await startChildControlPlane(url, {
    FLEETWALL_GRPC_HOST: '0.0.0.0',
    FLEETWALL_HTTP_HOST: '0.0.0.0',
    FLEETWALL_DATA_DIR: t.dataDir,
  });
  const op = await t.makeToken('operator', 'soon-revoked');
  const onChild = connectClients(`127.0.0.1:${child.grpcPort}`, { ca: t.ca, token: op.token });
  try {
    // Warm the other process's cache: the token is trusted there now.
    await unaryCall(onChild.rules, 'listRules', ListRulesRequest.fromPartial({ pageSize: 1 }));
    assert.equal((await httpsJson(child.httpPort, 'GET', '/v1/rules', { ca: t.ca, token: op.token })).status, 200);

    const admin = t.clients(t.adminToken);
    await unaryCall(admin.tokens, 'revokeToken', { id: op.id });
    const revokedAt = Date.now();
    let grpcRefusedAt: number | undefined;
    let httpRefusedAt: number | undefined;
    while ((grpcRefusedAt === undefined || httpRefusedAt === undefined) && Date.now() - revokedAt < 5000) {
      if (grpcRefusedAt === undefined) {
        try {
          await unaryCall(onChild.rules, 'listRules', ListRulesRequest.fromPartial({ pageSize: 1 }));
        } catch (e) {
          assert.equal((e as { code: number }).code, status.PERMISSION_DENIED);
          assert.equal(errorInfoOf(e as never)?.reason, 'TOKEN_REVOKED');
          grpcRefusedAt = Date.now();
        }
      }
      if (httpRefusedAt === undefined) {
        const r = await httpsJson(child.httpPort, 'GET', '/v1/rules', { ca: t.ca, token: op.token });
        if (r.status !== 200) {
          assert.equal(r.status, 403);
          assert.equal(r.body.reason, 'TOKEN_REVOKED');
          httpRefusedAt = Date.now();
        }
      }
    }
    assert.ok(
      grpcRefusedAt !== undefined && grpcRefusedAt - revokedAt < 1000,
      `gRPC refused ${grpcRefusedAt! - revokedAt} ms after the revoke`,
    );
    assert.ok(
      httpRefusedAt !== undefined && httpRefusedAt - revokedAt < 1000,
      `HTTP refused ${httpRefusedAt! - revokedAt} ms after the revoke`,
    );
    tc.diagnostic(
      `refused on the other process ${grpcRefusedAt! - revokedAt} ms (gRPC) and ${httpRefusedAt! - revokedAt} ms (HTTP) after the revoke`,
    );
    // And here, where it was revoked.
    const e = await callError(unaryCall(t.clients(op.token).rules, 'listRules', ListRulesRequest.fromPartial({ pageSize: 1 })));
    assert.equal(errorInfoOf(e)?.reason, 'TOKEN_REVOKED');
  } finally {
    onChild.close();
    await child.stop();
  }
});
