// The node's key and its certificate signing request. The key is made here,
// on the node (ECDSA P-256 with node:crypto), and never leaves it; the CSR
// (PKCS#10, built with @peculiar/x509 on Node's WebCrypto, since node:crypto
// cannot write one) proves the node holds it. The control plane puts the
// node name into the certificate whatever the CSR asks.
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, generateKeyPairSync, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A new private key, PEM (PKCS#8). */
export function generateNodeKey(): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** A CSR for `keyPem`, CN = the node name. */
export async function createCsr(keyPem: string, nodeName: string): Promise<string> {
  const priv = createPrivateKey(keyPem);
  const pub = createPublicKey(priv);
  const subtle = webcrypto.subtle;
  const privateKey = await subtle.importKey('pkcs8', priv.export({ type: 'pkcs8', format: 'der' }), ALG, false, ['sign']);
  const publicKey = await subtle.importKey('spki', pub.export({ type: 'spki', format: 'der' }), ALG, true, ['verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${nodeName.replace(/[,+="<>#;\\]/g, '_')}`,
    keys: { privateKey, publicKey } as never,
    signingAlgorithm: ALG,
  });
  const pem = csr.toString('pem');
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}
