// @peculiar/x509 on Node's WebCrypto (node:crypto cannot create certificates
// or CSRs). Everything in pki/ that builds X.509 imports it from here, so the
// provider is set once. @peculiar/x509 uses tsyringe, which needs the
// reflect-metadata polyfill loaded first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

/** ECDSA P-256 with SHA-256: every key and signature of the control plane's PKI. */
export const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export const subtle = webcrypto.subtle;

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await subtle.exportKey('pkcs8', key);
  return `${x509.PemConverter.encode(der, 'PRIVATE KEY')}\n`;
}

export async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decode(pem)[0];
  if (!der) throw new Error('no PEM block in the private key');
  return (await subtle.importKey('pkcs8', der, KEY_ALGORITHM, false, ['sign'])) as CryptoKey;
}

/** A random positive 128-bit serial, hex. */
export function randomSerial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = b[0]! & 0x7f;
  return Buffer.from(b).toString('hex');
}
