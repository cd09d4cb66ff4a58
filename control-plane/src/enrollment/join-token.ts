// Join tokens, in the format of Kubernetes bootstrap tokens: "<id>.<secret>",
// 6 + 16 characters of [a-z0-9] (about 83 bits of secret). The id is public
// (listed, revoked by it); only the SHA-256 of the secret is stored, and it is
// compared in constant time. Pure (but for the random bytes).
import { createHash, randomInt, timingSafeEqual } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const TOKEN_RE = /^([a-z0-9]{6})\.([a-z0-9]{16})$/;
export const JOIN_TOKEN_ID_RE = /^[a-z0-9]{6}$/;

function randomText(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[randomInt(ALPHABET.length)];
  return s;
}

export interface JoinTokenParts {
  readonly id: string;
  readonly secret: string;
}

export function generateJoinToken(): JoinTokenParts & { readonly token: string } {
  const id = randomText(6);
  const secret = randomText(16);
  return { id, secret, token: `${id}.${secret}` };
}

/** The parts of a well-formed token, or undefined (garbage never reaches the store). */
export function parseJoinToken(text: string): JoinTokenParts | undefined {
  const m = TOKEN_RE.exec(text.trim());
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

export function hashJoinSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

export function joinSecretMatches(secret: string, storedSha256: Buffer): boolean {
  const h = hashJoinSecret(secret);
  return h.length === storedSha256.length && timingSafeEqual(h, storedSha256);
}

/** Join tokens live at most this long (kubeadm's default is 24 h; enrollment is meant to be soon). */
export const MAX_JOIN_TOKEN_TTL_MS = 7 * 86_400_000;
export const DEFAULT_JOIN_TOKEN_TTL_MS = 3_600_000;
