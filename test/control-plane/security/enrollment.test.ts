// Node enrollment and node identity on Sync (issue 15 part 3), against a
// control plane with TLS on (a non-loopback bind, its own PKI): a join
// token works once and not after it expired; a node certificate speaks only
// for its node (a certificate of node A claiming node B is refused and
// records nothing); the node's labels are the ones bound at enrollment (its
// Hello's are ignored) and only an admin changes them; a revocation closes
// the node's live stream on another control-plane process within a second
// and its certificate is refused from then on; renewal; the stream closes
// when its certificate expires; counters only for rules the node was sent.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { credentials, status } from '@grpc/grpc-js';
import {
  CreateJoinTokenRequest,
  EnrollRequest,
  ListJoinTokensRequest,
  RenewCertificateRequest,
} from '../../../proto/gen/fleetwall/v1/enrollment_service.js';
import { EnrollmentServiceClient } from '../../../proto/gen/fleetwall/v1/enrollment_service.js';
import { RevokeNodeRequest, UpdateNodeRequest } from '../../../proto/gen/fleetwall/v1/node_service.js';
import { CreateRuleRequest } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { Action } from '../../../proto/gen/fleetwall/v1/rule.js';
import { SyncMode } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { caPinOf } from '../../../control-plane/src/enrollment/ca-pin.js';
import { createCsr } from '../../../control-plane/src/pki/certificate-authority.js';
import { caPinOf as agentCaPinOf } from '../../../node-agent/src/identity/ca-pin.js';
import {
  callError,
  connectClients,
  errorInfoOf,
  startChildControlPlane,
  startTestControlPlane,
  unaryCall,
} from '../../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres.js';
import { withSql } from '../../support/rule-fixtures.js';
import { SyncClient } from '../../support/scripted-agent.js';
import {
  enrollNode,
  httpsJson,
  type nodeCredentials,
  startTlsControlPlane,
  type TlsControlPlane,
} from '../../support/tls-control-plane.js';

let pg: TestPostgres;
let url: string;
let t: TlsControlPlane;
const open: SyncClient[] = [];

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  t = await startTlsControlPlane(url, { authPenaltyMaxMs: 0, pingIntervalMs: 1000 });
});

after(async () => {
  for (const c of open) c.close();
  await t?.stop();
  await pg?.stop();
});

function agentOn(
  port: number,
  nodeName: string,
  creds: ReturnType<typeof nodeCredentials>,
  labels: Record<string, string> = {},
): SyncClient {
  const c = new SyncClient(`127.0.0.1:${port}`, { nodeName, labels, credentials: creds });
  open.push(c);
  return c;
}

async function nodeRows(names: string[]): Promise<{ name: string; agent_instance_id: string; labels: Record<string, string> }[]> {
  return withSql(url, (sql) => sql`select name, agent_instance_id, labels from nodes where name = any(${names}) order by name`) as never;
}

async function createRule(cidr: string, selector: Record<string, string> = {}): Promise<{ id: bigint; revision: bigint }> {
  const res = await unaryCall(
    t.clients(t.adminToken).rules,
    'createRule',
    CreateRuleRequest.fromPartial({ rule: { cidr, action: Action.ACTION_DENY, selector } }),
  );
  return { id: res.rule!.id, revision: res.revision };
}

test('a join token enrolls one node once: the certificate names the node; a second use, a wrong name, a revoked token are refused and store nothing', async () => {
  const admin = t.clients(t.adminToken);
  const anon = connectClients(`127.0.0.1:${t.cp.grpcPort}`, { ca: t.ca });
  try {
    const jt = await unaryCall(admin.enrollment, 'createJoinToken', CreateJoinTokenRequest.fromPartial({ labels: { role: 'web' } }));
    assert.match(jt.token, /^[a-z0-9]{6}\.[a-z0-9]{16}$/, 'the format of Kubernetes bootstrap tokens');
    assert.equal(jt.joinToken!.id, jt.token.split('.')[0]);
    // The pin is the CA's SubjectPublicKeyInfo hash, the same by the control plane's and the agent's function.
    assert.equal(jt.caCertHash, caPinOf(t.ca.toString('utf8')));
    assert.equal(jt.caCertHash, agentCaPinOf(t.ca.toString('utf8')));
    assert.ok(jt.joinToken!.expireTime!.getTime() - Date.now() <= 3_600_000, 'one hour by default');
    // Only a hash of the secret is stored.
    await withSql(url, async (sql) => {
      const [row] = await sql<{ secret_sha256: Buffer }[]>`select secret_sha256 from join_tokens where id = ${jt.joinToken!.id}`;
      assert.equal(row!.secret_sha256.length, 32);
      assert.ok(!row!.secret_sha256.toString('latin1').includes(jt.token.split('.')[1]!));
    });

    const first = await createCsr('web-1');
    const res = await unaryCall(
      anon.enrollment,
      'enroll',
      EnrollRequest.fromPartial({ joinToken: jt.token, nodeName: 'web-1', csrPem: first.csrPem }),
    );
    const cert = new X509Certificate(res.certificatePem);
    assert.equal(res.nodeName, 'web-1');
    assert.deepEqual(res.labels, { role: 'web' });
    assert.match(cert.subjectAltName ?? '', /URI:fleetwall:\/\/node\/web-1/);
    assert.match(cert.subject, /CN=web-1/);
    assert.ok(cert.checkPrivateKey(createPrivateKey(first.keyPem)), "the node's own key");
    assert.ok(cert.verify(new X509Certificate(t.ca).publicKey), 'issued by the CA');

    const before = await withSql(url, (sql) => sql`select count(*)::int as n from node_certificates`);
    const again = await callError(
      unaryCall(
        anon.enrollment,
        'enroll',
        EnrollRequest.fromPartial({ joinToken: jt.token, nodeName: 'web-2', csrPem: (await createCsr('web-2')).csrPem }),
      ),
    );
    assert.equal(again.code, status.PERMISSION_DENIED);
    assert.equal(errorInfoOf(again)?.reason, 'JOIN_TOKEN_USED');
    assert.match(again.details, /already used \(by node web-1\)/);
    const garbage = await callError(
      unaryCall(
        anon.enrollment,
        'enroll',
        EnrollRequest.fromPartial({ joinToken: 'abcdef.0123456789abcdef', nodeName: 'x', csrPem: first.csrPem }),
      ),
    );
    assert.equal(garbage.code, status.UNAUTHENTICATED);
    assert.equal(errorInfoOf(garbage)?.reason, 'JOIN_TOKEN_INVALID');

    // A token for one node name enrolls only that name; a refused attempt does not use it up.
    const forDb = await unaryCall(admin.enrollment, 'createJoinToken', CreateJoinTokenRequest.fromPartial({ nodeName: 'db-1' }));
    const wrong = await callError(
      unaryCall(anon.enrollment, 'enroll', EnrollRequest.fromPartial({ joinToken: forDb.token, nodeName: 'web-9', csrPem: first.csrPem })),
    );
    assert.equal(wrong.code, status.PERMISSION_DENIED);
    assert.equal(errorInfoOf(wrong)?.reason, 'NODE_MISMATCH');
    const db = await unaryCall(
      anon.enrollment,
      'enroll',
      EnrollRequest.fromPartial({ joinToken: forDb.token, nodeName: 'db-1', csrPem: (await createCsr('db-1')).csrPem }),
    );
    assert.equal(db.nodeName, 'db-1');

    // A revoked token enrolls nothing.
    const revoked = await unaryCall(admin.enrollment, 'createJoinToken', CreateJoinTokenRequest.fromPartial({}));
    await unaryCall(admin.enrollment, 'revokeJoinToken', { id: revoked.joinToken!.id });
    const r = await callError(
      unaryCall(
        anon.enrollment,
        'enroll',
        EnrollRequest.fromPartial({ joinToken: revoked.token, nodeName: 'web-3', csrPem: first.csrPem }),
      ),
    );
    assert.equal(errorInfoOf(r)?.reason, 'JOIN_TOKEN_REVOKED');
    const after = await withSql(url, (sql) => sql`select count(*)::int as n from node_certificates`);
    assert.equal(after[0]!.n, before[0]!.n + 1, 'only db-1 was enrolled after web-1');
    await withSql(url, async (sql) => {
      const rows = await sql`select 1 from node_identities where name in ('web-2', 'web-3', 'web-9')`;
      assert.equal(rows.length, 0, 'refusals stored no identity');
    });

    // ls: usable tokens only, --all shows used and revoked ones; the audit log has the enrollment.
    const usable = await unaryCall(admin.enrollment, 'listJoinTokens', ListJoinTokensRequest.fromPartial({}));
    assert.ok(!usable.joinTokens.some((x) => x.id === jt.joinToken!.id));
    const all = await unaryCall(admin.enrollment, 'listJoinTokens', ListJoinTokensRequest.fromPartial({ includeInactive: true }));
    assert.equal(all.joinTokens.find((x) => x.id === jt.joinToken!.id)?.usedByNode, 'web-1');
    await withSql(url, async (sql) => {
      const rows = await sql<{ actor: string }[]>`select actor from audit_log where action = 'node.enroll' order by id`;
      assert.deepEqual(
        rows.map((x) => x.actor),
        [`join-token:${jt.joinToken!.id}`, `join-token:${forDb.joinToken!.id}`],
      );
    });
    // Failed enrollments are counted.
    const m = await httpsJson(t.cp.httpPort, 'GET', '/metrics', { ca: t.ca, token: t.adminToken });
    assert.match(String(m.body), /fleetwall_auth_failures_total\{reason="JOIN_TOKEN_USED"[^}]*\} [1-9]/);
  } finally {
    anon.close();
  }
});

test('an expired join token is refused', async () => {
  const admin = t.clients(t.adminToken);
  const jt = await unaryCall(admin.enrollment, 'createJoinToken', CreateJoinTokenRequest.fromPartial({ ttl: { seconds: 1n, nanos: 0 } }));
  while (Date.now() <= jt.joinToken!.expireTime!.getTime()) await sleep(100);
  const anon = connectClients(`127.0.0.1:${t.cp.grpcPort}`, { ca: t.ca });
  try {
    const e = await callError(
      unaryCall(
        anon.enrollment,
        'enroll',
        EnrollRequest.fromPartial({ joinToken: jt.token, nodeName: 'late-1', csrPem: (await createCsr('late-1')).csrPem }),
      ),
    );
    assert.equal(e.code, status.UNAUTHENTICATED);
    assert.equal(errorInfoOf(e)?.reason, 'JOIN_TOKEN_EXPIRED');
    const tooLong = await callError(
      unaryCall(admin.enrollment, 'createJoinToken', CreateJoinTokenRequest.fromPartial({ ttl: { seconds: 8n * 86400n, nanos: 0 } })),
    );
    assert.equal(errorInfoOf(tooLong)?.reason, 'INVALID_TTL');
  } finally {
    anon.close();
  }
});

test("Sync takes a node certificate only; a certificate of node A claiming node B is refused and records nothing, B's stream untouched; the Hello's labels are ignored", async () => {
  const a = await enrollNode(t, 'node-a', { labels: { role: 'web' } });
  const b = await enrollNode(t, 'node-b', { labels: { role: 'db' } });
  const webRule = await createRule('198.51.100.0/24', { role: 'web' });
  const dbRule = await createRule('203.0.113.0/24', { role: 'db' });

  // No certificate (an admin token is no substitute): UNAUTHENTICATED before any Hello is read.
  const plainTls = new SyncClient(`127.0.0.1:${t.cp.grpcPort}`, { nodeName: 'node-a', credentials: credentials.createSsl(t.ca) });
  open.push(plainTls);
  plainTls.connect();
  await plainTls.waitFor((c) => c.ended !== undefined, 'refusal');
  assert.equal(plainTls.ended!.code, status.UNAUTHENTICATED);
  assert.equal(errorInfoOf(plainTls.ended!.error!)?.reason, 'NODE_CERT_REQUIRED');

  // B connects for real.
  const realB = agentOn(t.cp.grpcPort, 'node-b', b.credentials);
  realB.connect();
  await realB.waitFor((c) => c.inSync, 'node-b in sync');
  assert.ok(realB.rules.has(dbRule.id) && !realB.rules.has(webRule.id), 'node-b gets the rules of its bound labels');
  const rowsBefore = await nodeRows(['node-a', 'node-b']);

  // A's certificate, claiming B: PERMISSION_DENIED, nothing recorded, B's stream stays.
  const impostor = agentOn(t.cp.grpcPort, 'node-b', a.credentials, { role: 'db' });
  impostor.connect();
  await impostor.waitFor((c) => c.ended !== undefined, 'refusal');
  assert.equal(impostor.ended!.code, status.PERMISSION_DENIED);
  assert.equal(errorInfoOf(impostor.ended!.error!)?.reason, 'NODE_MISMATCH');
  assert.match(impostor.ended!.details, /node "node-a"'s; a Hello for "node-b" is refused/);
  assert.deepEqual(await nodeRows(['node-a', 'node-b']), rowsBefore, 'no node row, no change to node-b');
  assert.equal(impostor.starts.length, 0, 'never got a SyncStart');
  const next = await createRule('192.0.2.128/25', { role: 'db' });
  await realB.waitFor((c) => c.appliedRevision >= next.revision, 'node-b still follows');
  assert.equal(realB.ended, undefined, "node-b's stream was not closed");

  // A as itself, its Hello claiming role=db: the labels bound at enrollment (role=web) decide.
  const realA = agentOn(t.cp.grpcPort, 'node-a', a.credentials, { role: 'db' });
  realA.connect();
  await realA.waitFor((c) => c.inSync, 'node-a in sync');
  assert.ok(realA.rules.has(webRule.id), 'the rules of its bound labels');
  assert.ok(!realA.rules.has(dbRule.id) && !realA.rules.has(next.id), 'not the rules of the labels it claimed');
  const [rowA] = await nodeRows(['node-a']);
  assert.deepEqual(rowA!.labels, { role: 'web' });

  // Counters only for rules it was sent: the db rule and a rule that does not exist are dropped (and counted).
  realA.report({
    seq: 1n,
    rules: [
      { ruleId: webRule.id, packets: 5n, bytes: 500n },
      { ruleId: dbRule.id, packets: 1_000_000_000_000n, bytes: 1n },
      { ruleId: 999_999n, packets: 7n, bytes: 7n },
    ],
  });
  await realA.waitFor((c) => c.counterAcks.includes(1n), 'counter ack');
  await sleep(400); // a counter flush interval (test config: 200 ms)
  await withSql(url, async (sql) => {
    const rows = await sql<{ rule_id: bigint; packets: string }[]>`
      select rule_id, packets::text from node_rule_counters where node_name = 'node-a' order by rule_id`;
    assert.deepEqual(
      rows.map((r) => [r.rule_id, r.packets]),
      [[webRule.id, '5']],
    );
  });
  const m = await httpsJson(t.cp.httpPort, 'GET', '/metrics', { ca: t.ca, token: t.adminToken });
  assert.match(String(m.body), /fleetwall_counter_samples_dropped_total(\{[^}]*\})? 2\b/);
  realA.close();
  realB.close();
});

test('a revoked node: its live stream is closed within a second on another control-plane process; its certificate is refused from then on (Sync and renewal)', async (tc) => {
  const n = await enrollNode(t, 'gone-1', { labels: { role: 'web' } });
  // Another process (its own OS process) on the same database and CA.
  const child = await startChildControlPlane(url, {
    FLEETWALL_GRPC_HOST: '0.0.0.0',
    FLEETWALL_HTTP_HOST: '0.0.0.0',
    FLEETWALL_DATA_DIR: t.dataDir,
  });
  try {
    const agent = agentOn(child.grpcPort, 'gone-1', n.credentials);
    agent.connect();
    await agent.waitFor((c) => c.inSync, 'in sync on the other process');
    const res = await unaryCall(t.clients(t.adminToken).nodes, 'revokeNode', RevokeNodeRequest.fromPartial({ name: 'gone-1' }));
    const revokedAt = Date.now();
    assert.equal(res.revokedCertificates, 1);
    await agent.waitFor((c) => c.ended !== undefined, 'stream closed', 5000);
    const ms = Date.now() - revokedAt;
    assert.ok(ms < 1000, `closed ${ms} ms after the revoke`);
    tc.diagnostic(`stream closed on the other process ${ms} ms after the revoke`);
    assert.equal(agent.ended!.code, status.PERMISSION_DENIED);
    assert.equal(errorInfoOf(agent.ended!.error!)?.reason, 'NODE_REVOKED');

    // From then on: a new stream with that certificate, on either process, and a renewal are refused.
    for (const port of [t.cp.grpcPort, child.grpcPort]) {
      const again = agentOn(port, 'gone-1', n.credentials);
      again.connect();
      await again.waitFor((c) => c.ended !== undefined, 'refusal');
      assert.equal(errorInfoOf(again.ended!.error!)?.reason, 'NODE_REVOKED');
      assert.equal(again.starts.length, 0);
    }
    const en = new EnrollmentServiceClient(`127.0.0.1:${t.cp.grpcPort}`, n.credentials);
    try {
      const e = await callError(
        unaryCall(en, 'renewCertificate', RenewCertificateRequest.fromPartial({ csrPem: (await createCsr('gone-1')).csrPem })),
      );
      assert.equal(e.code, status.PERMISSION_DENIED);
      assert.equal(errorInfoOf(e)?.reason, 'NODE_REVOKED');
    } finally {
      en.close();
    }
  } finally {
    await child.stop();
  }
});

test("an admin relabels a node: its stream is closed and its next Sync is a snapshot of the new labels' rules; the node cannot relabel itself", async () => {
  const n = await enrollNode(t, 'move-1', { labels: { role: 'web' } });
  const web = await createRule('198.18.0.0/24', { role: 'web' });
  const cache = await createRule('198.18.1.0/24', { role: 'cache' });
  const agent = agentOn(t.cp.grpcPort, 'move-1', n.credentials);
  agent.connect();
  await agent.waitFor((c) => c.inSync, 'in sync');
  assert.ok(agent.rules.has(web.id) && !agent.rules.has(cache.id));

  const viewer = await t.makeToken('viewer');
  const denied = await callError(
    unaryCall(t.clients(viewer.token).nodes, 'updateNode', UpdateNodeRequest.fromPartial({ name: 'move-1', labels: {} })),
  );
  assert.equal(denied.code, status.PERMISSION_DENIED, 'admins only');
  const res = await unaryCall(
    t.clients(t.adminToken).nodes,
    'updateNode',
    UpdateNodeRequest.fromPartial({ name: 'move-1', labels: { role: 'cache' } }),
  );
  assert.deepEqual(res.labels, { role: 'cache' });
  await agent.waitFor((c) => c.ended !== undefined, 'stream closed by the relabel');
  assert.equal(errorInfoOf(agent.ended!.error!)?.reason, 'NODE_RELABELED');

  // It reconnects to resume from where it was: it gets a snapshot with the new labels' rules instead.
  const back = agentOn(t.cp.grpcPort, 'move-1', n.credentials, { role: 'web' });
  back.connect({ resumeRevision: agent.appliedRevision, storeId: agent.storeId });
  await back.waitFor((c) => c.inSync, 'in sync again');
  assert.equal(back.start!.mode, SyncMode.SYNC_MODE_SNAPSHOT);
  assert.ok(back.rules.has(cache.id) && !back.rules.has(web.id), "the new labels' rules");
  // Once that snapshot is applied (ACKed), resuming is safe again.
  await sleep(300);
  back.close();
  const third = agentOn(t.cp.grpcPort, 'move-1', n.credentials);
  third.connect({ resumeRevision: back.appliedRevision, storeId: back.storeId });
  await third.waitFor((c) => c.inSync, 'in sync a third time');
  assert.equal(third.start!.mode, SyncMode.SYNC_MODE_RESUME);
  // Over HTTP too, and refused for a node that never enrolled.
  const h = await httpsJson(t.cp.httpPort, 'PATCH', '/v1/nodes/nobody', { ca: t.ca, token: t.adminToken, body: { labels: { a: 'b' } } });
  assert.equal(h.status, 404);
  assert.equal(h.body.reason, 'NODE_NOT_FOUND');
  third.close();
});

test('renewal gives the same node a new certificate; a stream is closed when its certificate expires', async () => {
  const short = await startTlsControlPlane(await pg.newDatabase(), { authPenaltyMaxMs: 0, nodeCertTtlMs: 3000 });
  try {
    const n = await enrollNode(short, 'brief-1');
    const first = new X509Certificate(n.certPem);
    const en = new EnrollmentServiceClient(`127.0.0.1:${short.cp.grpcPort}`, n.credentials);
    let renewed: string;
    try {
      const res = await unaryCall(
        en,
        'renewCertificate',
        RenewCertificateRequest.fromPartial({ csrPem: (await createCsr('brief-1')).csrPem }),
      );
      renewed = res.certificatePem;
    } finally {
      en.close();
    }
    const second = new X509Certificate(renewed);
    assert.match(second.subjectAltName ?? '', /URI:fleetwall:\/\/node\/brief-1/);
    assert.notEqual(second.serialNumber, first.serialNumber);

    const agent = new SyncClient(`127.0.0.1:${short.cp.grpcPort}`, { nodeName: 'brief-1', credentials: n.credentials });
    open.push(agent);
    agent.connect();
    await agent.waitFor((c) => c.inSync, 'in sync');
    await agent.waitFor((c) => c.ended !== undefined, 'closed at expiry', 15_000);
    assert.equal(agent.ended!.code, status.UNAVAILABLE);
    assert.equal(errorInfoOf(agent.ended!.error!)?.reason, 'NODE_CERT_EXPIRED');
    assert.ok(Date.now() >= Date.parse(first.validTo), 'not before the certificate expired');
    agent.close();
  } finally {
    await short.stop();
  }
});

test('without TLS there is nothing to enroll: FAILED_PRECONDITION, and Sync works as before', async () => {
  const plain = await startTestControlPlane(await pg.newDatabase());
  try {
    const e = await callError(unaryCall(plain.clients.enrollment, 'createJoinToken', CreateJoinTokenRequest.fromPartial({})));
    assert.equal(e.code, status.FAILED_PRECONDITION);
    assert.equal(errorInfoOf(e)?.reason, 'ENROLLMENT_UNAVAILABLE');
    const agent = new SyncClient(plain.target, { nodeName: 'plain-1', labels: { role: 'web' } });
    open.push(agent);
    agent.connect();
    await agent.waitFor((c) => c.inSync, 'in sync');
    const [row] = await withSql(
      plain.cp.databaseUrl,
      (sql) => sql<{ labels: Record<string, string> }[]>`select labels from nodes where name = 'plain-1'`,
    );
    assert.deepEqual(row!.labels, { role: 'web' }, "the Hello's labels, as before");
    agent.close();
  } finally {
    await plain.stop();
  }
});
