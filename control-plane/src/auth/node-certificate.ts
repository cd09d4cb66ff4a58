// A node's identity from its verified TLS client certificate: the node name
// in the URI SAN fleetwall://node/<name> (pki/certificate-authority.ts
// nodeIdentityUri; the CN says the same but is only for people), the serial
// (the revocation list's key) and the expiry. Pure.
import type { PeerCertificate } from 'node:tls';
import type { NodeIdentity } from './principal.js';

const NODE_URI_PREFIX = 'fleetwall://node/';

/** Serials compare as upper-case hex without leading zeros (Node prints them with, X.509 tools without). */
export function normalizeSerial(serial: string): string {
  return serial.replace(/^0+(?=.)/, '').toUpperCase();
}

/** The entries of a subjectaltname string ("DNS:a, URI:b"); Node quotes an entry that holds a comma or quote. */
function sanEntries(alt: string): string[] {
  const out: string[] = [];
  const re = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:,\s*|$)/g;
  for (let m = re.exec(alt); m !== null && m[0] !== ''; m = re.exec(alt)) {
    const v = m[2]!;
    out.push(`${m[1]}:${v.startsWith('"') ? (JSON.parse(v) as string) : v}`);
  }
  return out;
}

/** The node a certificate names, or undefined when it names none (or several). */
export function nodeNameOfSan(subjectAltName: string | undefined): string | undefined {
  const names = sanEntries(subjectAltName ?? '')
    .filter((e) => e.startsWith(`URI:${NODE_URI_PREFIX}`))
    .map((e) => e.slice(4 + NODE_URI_PREFIX.length));
  if (names.length !== 1) return undefined;
  try {
    const name = decodeURIComponent(names[0]!);
    return name === '' ? undefined : name;
  } catch {
    return undefined;
  }
}

/** The node identity of a verified peer certificate (grpc-js getAuthContext().sslPeerCertificate). */
export function nodeIdentityOf(cert: PeerCertificate | undefined): NodeIdentity | undefined {
  if (!cert?.raw) return undefined;
  const name = nodeNameOfSan(cert.subjectaltname);
  if (name === undefined) return undefined;
  const notAfterMs = Date.parse(cert.valid_to);
  return { name, serial: normalizeSerial(cert.serialNumber), notAfterMs: Number.isFinite(notAfterMs) ? notAfterMs : 0 };
}
