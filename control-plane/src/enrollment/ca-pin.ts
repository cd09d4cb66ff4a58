// The CA pin an agent is given with its join token, as kubeadm's
// --discovery-token-ca-cert-hash: "sha256:" + the hex SHA-256 of the CA
// certificate's DER SubjectPublicKeyInfo. It names the CA's key, so it stays
// valid when the CA certificate is re-issued with the same key. The agent has
// the same function (node-agent/src/identity/ca-pin.ts; a test compares).
import { createHash, X509Certificate } from 'node:crypto';

export function caPinOf(caCertPem: string): string {
  const spki = new X509Certificate(caCertPem).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}
