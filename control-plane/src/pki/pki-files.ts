// The control plane's own PKI on disk, under <data-dir>/pki/:
//
//   ca.crt      the CA bundle clients and nodes trust (0644). During a CA
//               rollover it holds the new and the old CA; the one whose key
//               is ca.key signs.
//   ca.key      the CA's private key (0600)
//   server.crt  the server certificate both ports serve (0644)
//   server.key  its private key (0600)
//
// Created on the first start with TLS; the server certificate is re-issued
// when it lacks a name the configuration now needs, was not issued by the
// current CA, or expires within 30 days. Files are written to a temporary
// name with their final mode, then renamed, so a reader never sees a key
// with looser permissions or half a file.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  CA_TTL_MS,
  createCa,
  issueServerCert,
  type KeyAndCert,
  SERVER_CERT_RENEW_BEFORE_MS,
  SERVER_CERT_TTL_MS,
  type SubjectAltNames,
  splitPem,
} from './certificate-authority.js';
import { missingSans } from './server-sans.js';

export interface TlsFilePaths {
  readonly certFile: string;
  readonly keyFile: string;
  /** The CA bundle (own PKI: always; operator-given: when given). */
  readonly caFile: string | undefined;
}

export function ownPkiPaths(dataDir: string): { dir: string; caFile: string; caKeyFile: string; certFile: string; keyFile: string } {
  const dir = join(dataDir, 'pki');
  return {
    dir,
    caFile: join(dir, 'ca.crt'),
    caKeyFile: join(dir, 'ca.key'),
    certFile: join(dir, 'server.crt'),
    keyFile: join(dir, 'server.key'),
  };
}

/** Writes `text` to `path` atomically with `mode` from the first byte. */
export function writeFileAtomic(path: string, text: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode, flag: 'w' });
  chmodSync(tmp, mode); // the umask may have narrowed it
  renameSync(tmp, path);
}

/** The SANs in a certificate. */
export function sansOf(certPem: string): SubjectAltNames {
  const alt = new X509Certificate(certPem).subjectAltName ?? '';
  const dns: string[] = [];
  const ips: string[] = [];
  for (const part of alt.split(', ')) {
    if (part.startsWith('DNS:')) dns.push(part.slice(4));
    // Node spells IPv6 out in full (0:0:0:0:0:0:0:1); a URL host gives the short form (::1).
    else if (part.startsWith('IP Address:'))
      ips.push(part.includes(':', 11) ? new URL(`http://[${part.slice(11)}]`).hostname.slice(1, -1) : part.slice(11));
  }
  return { dns, ips };
}

/** Why the server certificate must be re-issued, or undefined when it is good. */
export function serverCertProblem(certPem: string, ca: KeyAndCert, want: SubjectAltNames, now: Date): string | undefined {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return 'unreadable';
  }
  const signer = new X509Certificate(splitPem(ca.certPem)[0]!);
  if (!cert.checkIssued(signer) || !cert.verify(signer.publicKey)) return 'not issued by the current CA';
  if (new Date(cert.validTo).getTime() - now.getTime() < SERVER_CERT_RENEW_BEFORE_MS) return `expires ${cert.validTo}`;
  const missing = missingSans(sansOf(certPem), want);
  if (missing.length > 0) return `lacks ${missing.join(', ')}`;
  return undefined;
}

/**
 * Creates the CA and the server certificate under <dataDir>/pki if needed,
 * re-issues the server certificate if it no longer fits; returns the paths.
 */
export async function ensureOwnPki(dataDir: string, sans: SubjectAltNames, logger: Logger, now = new Date()): Promise<TlsFilePaths> {
  const p = ownPkiPaths(dataDir);
  mkdirSync(p.dir, { recursive: true, mode: 0o755 });
  let ca: KeyAndCert;
  if (existsSync(p.caFile) && existsSync(p.caKeyFile)) {
    const bundle = readFileSync(p.caFile, 'utf8');
    ca = { certPem: signerOf(bundle, readFileSync(p.caKeyFile, 'utf8')), keyPem: readFileSync(p.caKeyFile, 'utf8') };
  } else {
    ca = await createCa('fleetwall CA', CA_TTL_MS, now);
    writeFileAtomic(p.caKeyFile, ca.keyPem, 0o600);
    writeFileAtomic(p.caFile, ca.certPem, 0o644);
    logger.info({ caFile: p.caFile }, 'created the control plane CA');
  }
  const problem =
    existsSync(p.certFile) && existsSync(p.keyFile) ? serverCertProblem(readFileSync(p.certFile, 'utf8'), ca, sans, now) : 'absent';
  if (problem !== undefined) {
    const server = await issueServerCert(ca, sans, SERVER_CERT_TTL_MS, now);
    // Key first: a reloader that sees the new certificate with the old key waits for the key.
    writeFileAtomic(p.keyFile, server.keyPem, 0o600);
    writeFileAtomic(p.certFile, server.certPem, 0o644);
    logger.info({ certFile: p.certFile, reason: problem, dns: sans.dns, ips: sans.ips }, 'issued the server certificate');
  }
  return { certFile: p.certFile, keyFile: p.keyFile, caFile: p.caFile };
}

/**
 * The own CA that signs node certificates (enrollment): the bundle's
 * certificate matching ca.key, and the whole bundle; undefined when
 * <dataDir>/pki holds no CA key (operator-given certificates).
 */
export function loadSigningCa(dataDir: string): { ca: KeyAndCert; bundlePem: string } | undefined {
  const p = ownPkiPaths(dataDir);
  if (!existsSync(p.caFile) || !existsSync(p.caKeyFile)) return undefined;
  const bundlePem = readFileSync(p.caFile, 'utf8');
  const keyPem = readFileSync(p.caKeyFile, 'utf8');
  return { ca: { certPem: signerOf(bundlePem, keyPem), keyPem }, bundlePem };
}

/** The certificate of the bundle whose public key matches the CA key (the signer), first in the result. */
function signerOf(bundle: string, keyPem: string): string {
  const certs = splitPem(bundle);
  if (certs.length === 0) throw new Error('pki/ca.crt holds no certificate');
  for (const c of certs) {
    try {
      if (new X509Certificate(c).checkPrivateKey(createPrivateKey(keyPem))) return c;
    } catch {
      // not this one
    }
  }
  throw new Error('pki/ca.key matches no certificate in pki/ca.crt');
}
