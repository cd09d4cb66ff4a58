// The agent's node identity (node-agent/src/identity/), in process against a
// real control plane with TLS on: with a wrong CA pin the agent refuses to
// enroll and says why, sending neither its token nor a CSR (the token stays
// usable); with the right pin it enrolls, keeps its key and certificate 0600
// in a 0700 directory, and uses them on the next start without enrolling
// again; an identity of another node, or one that expired with no token to
// enroll again, stops it with the reason; a renewal replaces the certificate
// and keeps the key.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import pino from 'pino';
import { ListJoinTokensRequest } from '../../proto/gen/fleetwall/v1/enrollment_service.js';
import { IdentityError, type IdentitySettings, NodeIdentity, wantsTls } from '../../node-agent/src/identity/node-identity.js';
import { identityPaths } from '../../node-agent/src/identity/identity-files.js';
import { pinnedCertificates } from '../../node-agent/src/identity/ca-pin.js';
import { loadConfig } from '../../node-agent/src/config.js';
import { createJoinToken } from '../support/agent-e2e-rig.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { startTlsControlPlane, type TlsControlPlane } from '../support/tls-control-plane.js';
import { unaryCall } from '../support/control-plane.js';

const log = pino({ level: 'silent' });
let pg: TestPostgres;
let t: TlsControlPlane;
let dir: string;

before(async () => {
  pg = await startTestPostgres();
  t = await startTlsControlPlane(await pg.newDatabase(), { authPenaltyMaxMs: 0 });
  dir = mkdtempSync(join(tmpdir(), 'fwidentity-'));
});

after(async () => {
  await t?.stop();
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function settings(o: Partial<IdentitySettings>): IdentitySettings {
  return {
    controlPlanes: [`localhost:${t.cp.grpcPort}`],
    nodeName: 'edge-1',
    identityDir: join(dir, 'edge-1'),
    joinToken: undefined,
    joinTokenFile: undefined,
    caCertHashes: [],
    caCertFile: undefined,
    tlsServerName: undefined,
    reconnectMinMs: 50,
    reconnectMaxMs: 500,
    ...o,
  };
}

test('a wrong CA pin: the agent refuses to enroll and says why; the join token was not sent', async () => {
  const jt = await createJoinToken({ clients: t.clients(t.adminToken) }, {});
  const wrong = `sha256:${'0'.repeat(64)}`;
  await assert.rejects(
    NodeIdentity.open(settings({ joinToken: jt.token, caCertHashes: [wrong] }), log),
    (e: unknown) =>
      e instanceof IdentityError &&
      /refusing to enroll/.test(e.message) &&
      e.message.includes(wrong) &&
      e.message.includes(jt.caCertHash) &&
      /impersonating/.test(e.message),
  );
  const usable = await unaryCall(t.clients(t.adminToken).enrollment, 'listJoinTokens', ListJoinTokensRequest.fromPartial({}));
  assert.ok(
    usable.joinTokens.some((x) => x.id === jt.joinToken!.id),
    'the token is still unused',
  );
  assert.throws(() => statSync(identityPaths(join(dir, 'edge-1')).cert), 'no certificate stored');
  // Only the pinned certificates of a bundle are kept.
  assert.equal(pinnedCertificates(t.ca.toString('utf8'), [wrong]).pem, '');
  assert.ok(pinnedCertificates(t.ca.toString('utf8'), [jt.caCertHash]).pem.includes('BEGIN CERTIFICATE'));
});

test('the right pin: enrolled, files 0600 in a 0700 directory, reused on the next start; renewal keeps the key', async () => {
  const jt = await createJoinToken({ clients: t.clients(t.adminToken) }, { labels: { role: 'edge' } });
  const s = settings({ joinToken: jt.token, caCertHashes: [jt.caCertHash] });
  const id = await NodeIdentity.open(s, log);
  assert.ok(id, 'TLS: an identity');
  const p = identityPaths(s.identityDir);
  assert.equal(statSync(s.identityDir).mode & 0o777, 0o700);
  for (const f of [p.key, p.cert, p.ca]) assert.equal(statSync(f).mode & 0o777, 0o600, f);
  const cert = new X509Certificate(id.certPem);
  assert.match(cert.subjectAltName ?? '', /URI:fleetwall:\/\/node\/edge-1/);

  // The next start: the token is used up, yet the agent starts with the identity on disk.
  const again = await NodeIdentity.open(s, log);
  assert.equal(again!.certPem, id.certPem);
  // Renewal over a channel of its own (no Sync stream here): a new certificate, same key, on disk.
  await again!.renew();
  const renewed = new X509Certificate(again!.certPem);
  assert.notEqual(renewed.serialNumber, cert.serialNumber);
  assert.equal(renewed.publicKey.export({ format: 'pem', type: 'spki' }), cert.publicKey.export({ format: 'pem', type: 'spki' }));
  assert.equal((await NodeIdentity.open(s, log))!.certPem, again!.certPem, 'the renewed certificate is what the next start uses');

  // Another node's identity directory is refused with the reason.
  await assert.rejects(NodeIdentity.open({ ...s, nodeName: 'edge-2' }, log), /is node "edge-1"'s, not "edge-2"/);
});

test('no TLS setting: plaintext as before; TLS settings without a way to trust the CA are refused', async () => {
  const plain = settings({ identityDir: join(dir, 'none') });
  assert.equal(wantsTls(plain), false);
  assert.equal(await NodeIdentity.open(plain, log), undefined);
  await assert.rejects(
    NodeIdentity.open(settings({ identityDir: join(dir, 'x'), joinToken: 'abcdef.0123456789abcdef' }), log),
    /--ca-cert-hash sha256:\.\.\. .* or --ca-cert FILE/,
  );
  await assert.rejects(
    NodeIdentity.open(settings({ identityDir: join(dir, 'y'), caCertHashes: [`sha256:${'1'.repeat(64)}`] }), log),
    /no node certificate in .*: give a --join-token/,
  );
  // The agent's flags: a malformed token or pin is a usage error.
  const base = ['--interfaces', 'eth0'];
  assert.throws(() => loadConfig([...base, '--join-token', 'nope']), /not a join token/);
  assert.throws(() => loadConfig([...base, '--ca-cert-hash', 'md5:00']), /not sha256:<64 hex digits>/);
  const cfg = loadConfig([...base, '--join-token', 'abcdef.0123456789abcdef', '--ca-cert-hash', `SHA256:${'A'.repeat(64)}`], {});
  assert.deepEqual(cfg.caCertHashes, [`sha256:${'a'.repeat(64)}`]);
  assert.equal(cfg.identityDir, '/var/lib/fleetwall-agent');
});

test('a join token in a file (compose, systemd credentials): read only when the agent has to enroll', async () => {
  const jt = await createJoinToken({ clients: t.clients(t.adminToken) }, {});
  const file = join(dir, 'edge-3.token');
  writeFileSync(file, `${jt.token}\n`, { mode: 0o600 });
  const s = settings({ nodeName: 'edge-3', identityDir: join(dir, 'edge-3'), joinTokenFile: file, caCertHashes: [jt.caCertHash] });
  assert.equal(wantsTls(s), true);
  const id = await NodeIdentity.open(s, log);
  assert.match(new X509Certificate(id!.certPem).subjectAltName ?? '', /URI:fleetwall:\/\/node\/edge-3/);
  // Later starts use the identity on disk: the file may be gone (a one-time secret).
  rmSync(file);
  assert.equal((await NodeIdentity.open(s, log))!.certPem, id!.certPem);
  // Enrolling without it, or with a file holding no token, stops the agent saying which file.
  const fresh = settings({ nodeName: 'edge-4', identityDir: join(dir, 'edge-4'), joinTokenFile: file, caCertHashes: [jt.caCertHash] });
  await assert.rejects(
    NodeIdentity.open(fresh, log),
    (e: unknown) => e instanceof IdentityError && e.message.includes(`cannot read ${file}`),
  );
  writeFileSync(file, 'hello\n');
  await assert.rejects(NodeIdentity.open(fresh, log), /holds no join token/);
  const base = ['--interfaces', 'eth0'];
  assert.throws(() => loadConfig([...base, '--join-token', 'abcdef.0123456789abcdef', '--join-token-file', file]), /give one of them/);
  assert.equal(loadConfig([...base, '--join-token-file', '/nonexistent'], {}).joinTokenFile, '/nonexistent', 'not read at start');
});
