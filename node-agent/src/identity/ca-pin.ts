// The CA pin, as kubeadm's --discovery-token-ca-cert-hash: "sha256:" + the hex
// SHA-256 of a CA certificate's DER SubjectPublicKeyInfo (the same function
// as control-plane/src/enrollment/ca-pin.ts; a test compares). An agent that
// does not trust the control plane yet keeps only the CA certificates whose
// pin it was given. Pure.
import { createHash, X509Certificate } from 'node:crypto';

const PIN_RE = /^sha256:[0-9a-f]{64}$/;

export function caPinOf(caCertPem: string): string {
  const spki = new X509Certificate(caCertPem).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

export function isCaPin(text: string): boolean {
  return PIN_RE.test(text);
}

/** Every certificate in a PEM bundle. */
export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((c) => `${c}\n`) ?? [];
}

/** The certificates of `bundle` whose pin is one of `pins`, and the pins the bundle had. */
export function pinnedCertificates(bundle: string, pins: readonly string[]): { pem: string; seen: string[] } {
  const want = new Set(pins.map((p) => p.toLowerCase()));
  const keep: string[] = [];
  const seen: string[] = [];
  for (const c of splitPem(bundle)) {
    let pin: string;
    try {
      pin = caPinOf(c);
    } catch {
      continue;
    }
    seen.push(pin);
    if (want.has(pin)) keep.push(c);
  }
  return { pem: keep.join(''), seen };
}
