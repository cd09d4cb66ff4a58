// The control plane's own certificate authority: a CA, the server certificate
// both ports serve, and (for node enrollment, issue 15 part 3) client
// certificates for nodes from their CSRs. ECDSA P-256, SHA-256. No I/O: PEM
// in, PEM out (pki-files.ts keeps them on disk).
import { X509Certificate as NodeX509, type webcrypto } from 'node:crypto';
import { generateKeyPair, importPrivateKey, KEY_ALGORITHM, privateKeyPem, randomSerial, x509 } from './x509.js';

export interface KeyAndCert {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface SubjectAltNames {
  readonly dns: readonly string[];
  readonly ips: readonly string[];
}

const DAY_MS = 86_400_000;
/** Backdating, so a peer whose clock is a little behind accepts a fresh certificate. */
const CLOCK_SKEW_MS = 5 * 60_000;

export async function createCa(commonName: string, ttlMs: number, now = new Date()): Promise<KeyAndCert> {
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${commonName}, O=fleetwall`,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + ttlMs),
    keys,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: pem(cert.toString('pem')), keyPem: await privateKeyPem(keys.privateKey) };
}

/** PEM text ending in a newline, so files and bundles concatenate cleanly. */
function pem(text: string): string {
  return text.endsWith('\n') ? text : `${text}\n`;
}

async function issue(
  ca: KeyAndCert,
  subject: string,
  publicKey: webcrypto.CryptoKey | x509.PublicKey,
  usage: x509.ExtendedKeyUsage,
  names: x509.JsonGeneralName[],
  ttlMs: number,
  now: Date,
): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const signingKey = await importPrivateKey(ca.keyPem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject,
    issuer: caCert.subject,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(now.getTime() + ttlMs),
    publicKey,
    signingKey,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([usage], false),
      new x509.SubjectAlternativeNameExtension(names, false),
      await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey),
    ],
  });
  return pem(cert.toString('pem'));
}

/** A server certificate for both ports, with these names (a fresh key each time). */
export async function issueServerCert(ca: KeyAndCert, sans: SubjectAltNames, ttlMs: number, now = new Date()): Promise<KeyAndCert> {
  const keys = await generateKeyPair();
  const names: x509.JsonGeneralName[] = [
    ...sans.dns.map((value) => ({ type: 'dns' as const, value })),
    ...sans.ips.map((value) => ({ type: 'ip' as const, value })),
  ];
  const certPem = await issue(
    ca,
    'CN=fleetwall control plane, O=fleetwall',
    keys.publicKey,
    x509.ExtendedKeyUsage.serverAuth,
    names,
    ttlMs,
    now,
  );
  return { certPem, keyPem: await privateKeyPem(keys.privateKey) };
}

/** The URI SAN a node certificate carries: the node's identity. */
export function nodeIdentityUri(nodeName: string): string {
  return `fleetwall://node/${encodeURIComponent(nodeName)}`;
}

/**
 * A node's client certificate from its CSR (PEM, PKCS#10): the CSR's own
 * signature must verify (the node holds the key); the certificate names
 * `nodeName` (CN and the URI SAN nodeIdentityUri) whatever the CSR asked.
 * For node enrollment (issue 15 part 3).
 */
export async function issueClientCert(ca: KeyAndCert, csrPem: string, nodeName: string, ttlMs: number, now = new Date()): Promise<string> {
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  if (!(await csr.verify())) throw new Error('the CSR signature does not verify');
  const cn = nodeName.replace(/[,+="<>#;\\]/g, '_');
  return issue(
    ca,
    `CN=${cn}, O=fleetwall-nodes`,
    csr.publicKey,
    x509.ExtendedKeyUsage.clientAuth,
    [{ type: 'url', value: nodeIdentityUri(nodeName) }],
    ttlMs,
    now,
  );
}

/** A CSR for `nodeName` with a fresh key (what an agent sends; here for tests and the agent's use). */
export async function createCsr(nodeName: string): Promise<{ csrPem: string; keyPem: string }> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${nodeName.replace(/[,+="<>#;\\]/g, '_')}`,
    keys,
    signingAlgorithm: KEY_ALGORITHM,
  });
  return { csrPem: pem(csr.toString('pem')), keyPem: await privateKeyPem(keys.privateKey) };
}

/** Every certificate in a PEM bundle (a CA file may hold old and new CAs during a rollover). */
export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Whether `certPem` was issued by one of the CAs in `bundlePem` (signature checked). */
export function issuedByBundle(certPem: string, bundlePem: string): boolean {
  const cert = new NodeX509(certPem);
  return splitPem(bundlePem).some((p) => {
    const ca = new NodeX509(p);
    return cert.checkIssued(ca) && cert.verify(ca.publicKey);
  });
}

export const CA_TTL_MS = 10 * 365 * DAY_MS;
export const SERVER_CERT_TTL_MS = 365 * DAY_MS;
/** The own server certificate is re-issued when it expires within this. */
export const SERVER_CERT_RENEW_BEFORE_MS = 30 * DAY_MS;
