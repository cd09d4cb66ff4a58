// The control plane's PKI (issue 15 part 2): the CA and server certificate
// made on the first start with TLS (names, modes, kept across starts,
// re-issued when the names change or the CA rolls over), client
// certificates from CSRs (for node enrollment), operator-given files used as
// they are, and a replaced certificate file served without a restart on
// both ports, also across a CA rollover with a bundle of old and new CA.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import pino from 'pino';
import { ListRulesRequest } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import {
  createCa,
  createCsr,
  issueClientCert,
  issuedByBundle,
  issueServerCert,
  nodeIdentityUri,
} from '../../../control-plane/src/pki/certificate-authority.js';
import { ensureOwnPki, ownPkiPaths, sansOf } from '../../../control-plane/src/pki/pki-files.js';
import { serverSans } from '../../../control-plane/src/pki/server-sans.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres.js';
import { connectClients, startTestControlPlane, unaryCall } from '../../support/control-plane.js';
import { httpsJson, tempDataDir } from '../../support/tls-control-plane.js';

const quiet = pino({ level: 'silent' });
const DAY = 86_400_000;
let pg: TestPostgres;
const dirs: string[] = [];

before(async () => {
  pg = await startTestPostgres();
});

after(async () => {
  await pg?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function dir(tag: string): string {
  const d = tempDataDir(tag);
  dirs.push(d);
  return d;
}

test('server names: loopback, host name, the listen addresses (every interface for a wildcard), --tls-san', () => {
  const s = serverSans({
    hosts: ['0.0.0.0', '127.0.0.1'],
    hostname: 'cp-1',
    interfaceAddresses: ['10.0.0.5', 'fe80::1%eth0', '127.0.0.1'],
    extra: ['cp.example.com', '192.0.2.7'],
  });
  assert.deepEqual(s.dns, ['cp-1', 'cp.example.com', 'localhost']);
  assert.deepEqual(s.ips, ['10.0.0.5', '127.0.0.1', '192.0.2.7', '::1', 'fe80::1']);
  const specific = serverSans({ hosts: ['192.0.2.1'], hostname: 'h', interfaceAddresses: ['10.9.9.9'], extra: [] });
  assert.ok(!specific.ips.includes('10.9.9.9'), 'a specific bind does not add every interface');
  assert.ok(specific.ips.includes('192.0.2.1'));
});

test('own PKI: created once with the right modes, kept, re-issued for new names and after a CA rollover', async () => {
  const d = dir('pki');
  const sans = { dns: ['localhost', 'cp-1'], ips: ['127.0.0.1', '::1'] };
  const p1 = await ensureOwnPki(d, sans, quiet);
  const paths = ownPkiPaths(d);
  const cert1 = readFileSync(p1.certFile, 'utf8');
  assert.deepEqual(sansOf(cert1), sans);
  assert.ok(issuedByBundle(cert1, readFileSync(paths.caFile, 'utf8')));
  const leaf = new X509Certificate(cert1);
  assert.equal(leaf.ca, false);
  assert.match(leaf.keyUsage?.join(',') ?? '', /1\.3\.6\.1\.5\.5\.7\.3\.1/, 'serverAuth');
  assert.ok(new X509Certificate(readFileSync(paths.caFile)).ca);

  await ensureOwnPki(d, sans, quiet);
  assert.equal(readFileSync(p1.certFile, 'utf8'), cert1, 'kept when it still fits');
  await ensureOwnPki(d, { ...sans, dns: [...sans.dns, 'cp.example.com'] }, quiet);
  const cert2 = readFileSync(p1.certFile, 'utf8');
  assert.notEqual(cert2, cert1, 're-issued for a new name');
  assert.ok(sansOf(cert2).dns.includes('cp.example.com'));
  await ensureOwnPki(d, sans, quiet, new Date(Date.now() + 340 * DAY));
  assert.notEqual(readFileSync(p1.certFile, 'utf8'), cert2, 're-issued within 30 days of its expiry');

  // Rollover: a new CA signs, the bundle keeps the old one so what it issued still verifies.
  const oldCa = { certPem: readFileSync(paths.caFile, 'utf8'), keyPem: readFileSync(paths.caKeyFile, 'utf8') };
  const nodeCertOld = await issueClientCert(oldCa, (await createCsr('web-1')).csrPem, 'web-1', DAY);
  const newCa = await createCa('fleetwall CA 2', 10 * 365 * DAY);
  writeFileSync(paths.caFile, `${newCa.certPem}${oldCa.certPem}`);
  writeFileSync(paths.caKeyFile, newCa.keyPem, { mode: 0o600 });
  await ensureOwnPki(d, sans, quiet);
  const cert3 = readFileSync(p1.certFile, 'utf8');
  assert.ok(issuedByBundle(cert3, newCa.certPem), 'the server certificate now comes from the new CA');
  const bundle = readFileSync(paths.caFile, 'utf8');
  assert.ok(issuedByBundle(nodeCertOld, bundle), 'a certificate of the old CA still verifies against the bundle');
  assert.ok(!issuedByBundle(nodeCertOld, newCa.certPem));
});

test('client certificates from CSRs name the node, whatever the CSR asked', async () => {
  const ca = await createCa('test CA', DAY);
  const csr = await createCsr('pretends-to-be-db-1');
  const pem = await issueClientCert(ca, csr.csrPem, 'web-1', 3600_000);
  const c = new X509Certificate(pem);
  assert.match(c.subject, /CN=web-1/);
  assert.equal(c.subjectAltName, `URI:${nodeIdentityUri('web-1')}`);
  assert.match(c.keyUsage?.join(',') ?? '', /1\.3\.6\.1\.5\.5\.7\.3\.2/, 'clientAuth');
  assert.ok(issuedByBundle(pem, ca.certPem));
  assert.ok(new Date(c.validTo).getTime() - Date.now() <= 3600_000 + 1000);
  // A CSR whose signature does not verify (not signed by the key it carries) is refused.
  const other = await createCsr('web-1');
  const tampered = csr.csrPem.slice(0, 120) + other.csrPem.slice(120, 200) + csr.csrPem.slice(200);
  await assert.rejects(issueClientCert(ca, tampered, 'web-1', 3600_000));
});

/** The certificate a TLS server on 127.0.0.1:port presents (ALPN h2 for the gRPC port). */
function servedFingerprint(port: number, ca: Buffer, h2: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...(h2 ? { ALPNProtocols: ['h2'] } : {}) }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

test('operator-given certificate files are used as given, and a replaced file is served on both ports without a restart', async () => {
  const d = dir('given');
  const ca1 = await createCa('operator CA', DAY);
  const ca2 = await createCa('operator CA 2', DAY);
  const sans = { dns: ['localhost'], ips: ['127.0.0.1'] };
  const first = await issueServerCert(ca1, sans, DAY);
  const files = { cert: join(d, 'tls.crt'), key: join(d, 'tls.key'), ca: join(d, 'ca.pem') };
  writeFileSync(files.cert, first.certPem);
  writeFileSync(files.key, first.keyPem, { mode: 0o600 });
  // The bundle holds both CAs: a rollover.
  writeFileSync(files.ca, `${ca1.certPem}${ca2.certPem}`);
  const cp = await startTestControlPlane(await pg.newDatabase(), {
    tlsCertFile: files.cert,
    tlsKeyFile: files.key,
    tlsCaFile: files.ca,
    tlsReloadIntervalMs: 50,
    dataDir: d,
  });
  try {
    assert.equal(cp.cp.security, 'tls', 'operator-given files turn TLS on (loopback bind)');
    assert.ok(!existsSync(join(d, 'pki')), 'no own PKI when certificates are given');
    const bundle = Buffer.from(`${ca1.certPem}${ca2.certPem}`);
    const fp1 = new X509Certificate(first.certPem).fingerprint256;
    assert.equal(await servedFingerprint(cp.grpcPort, bundle, true), fp1);
    assert.equal(await servedFingerprint(cp.httpPort, bundle, false), fp1);
    const clients = connectClients(`127.0.0.1:${cp.grpcPort}`, { ca: bundle, token: readFileSync(join(d, 'admin.token'), 'utf8').trim() });
    await unaryCall(clients.rules, 'listRules', ListRulesRequest.fromPartial({ pageSize: 1 }));

    // Replace the pair with one from the new CA (key first, as a careful operator or cert-manager would).
    const second = await issueServerCert(ca2, sans, DAY);
    writeFileSync(files.key, second.keyPem, { mode: 0o600 });
    writeFileSync(files.cert, second.certPem);
    const fp2 = new X509Certificate(second.certPem).fingerprint256;
    const deadline = Date.now() + 10_000;
    let grpcFp = fp1;
    let httpFp = fp1;
    while ((grpcFp !== fp2 || httpFp !== fp2) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      grpcFp = await servedFingerprint(cp.grpcPort, bundle, true);
      httpFp = await servedFingerprint(cp.httpPort, bundle, false);
    }
    assert.equal(grpcFp, fp2, 'gRPC serves the new certificate, same process');
    assert.equal(httpFp, fp2, 'HTTPS serves the new certificate, same process');
    // A client that trusts the bundle keeps working across the rollover: new connections verify against CA 2.
    const fresh = connectClients(`127.0.0.1:${cp.grpcPort}`, { ca: bundle, token: readFileSync(join(d, 'admin.token'), 'utf8').trim() });
    await unaryCall(fresh.rules, 'listRules', ListRulesRequest.fromPartial({ pageSize: 1 }));
    const h = await httpsJson(cp.httpPort, 'GET', '/healthz', { ca: Buffer.from(ca2.certPem) });
    assert.equal(h.status, 200);
    clients.close();
    fresh.close();
  } finally {
    await cp.stop();
  }
});
