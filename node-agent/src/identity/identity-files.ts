// The node's identity on disk, in its identity directory (--identity-dir,
// default /var/lib/fleetwall-agent; 0700):
//
//   node.key   the node's private key (0600), made at enrollment, kept across renewals
//   node.crt   its client certificate (0600), replaced at each renewal
//   ca.crt     the CA certificates it trusts for the control plane (0600): the pinned
//              ones of the control plane's bundle, or the --ca-cert file's
//
// Each file is written to a temporary name with its final mode, then renamed,
// so a crash never leaves half a file or a key readable by others.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface IdentityFiles {
  readonly keyPem: string;
  readonly certPem: string;
  readonly caPem: string;
}

export function identityPaths(dir: string): { key: string; cert: string; ca: string } {
  return { key: join(dir, 'node.key'), cert: join(dir, 'node.crt'), ca: join(dir, 'ca.crt') };
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

export function hasIdentity(dir: string): boolean {
  const p = identityPaths(dir);
  return existsSync(p.key) && existsSync(p.cert) && existsSync(p.ca);
}

/** Reads the identity; throws when a file is missing or the certificate is not the key's. */
export function readIdentity(dir: string): IdentityFiles {
  const p = identityPaths(dir);
  const f = { keyPem: readFileSync(p.key, 'utf8'), certPem: readFileSync(p.cert, 'utf8'), caPem: readFileSync(p.ca, 'utf8') };
  if (!new X509Certificate(f.certPem).checkPrivateKey(createPrivateKey(f.keyPem)))
    throw new Error(`${p.cert} is not the certificate of ${p.key}`);
  return f;
}

export function ensureIdentityDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/** Writes the key first (enrollment), so a certificate on disk always has its key. */
export function writeKey(dir: string, keyPem: string): void {
  ensureIdentityDir(dir);
  writeAtomic(identityPaths(dir).key, keyPem);
}

export function writeCertificate(dir: string, certPem: string, caPem: string): void {
  ensureIdentityDir(dir);
  const p = identityPaths(dir);
  writeAtomic(p.ca, caPem);
  writeAtomic(p.cert, certPem);
}
