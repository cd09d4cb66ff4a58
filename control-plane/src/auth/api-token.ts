// API tokens: "fwt_" + 43 base64url characters (256 random bits). Only the
// SHA-256 of a token is stored. A slow KDF (bcrypt, scrypt) protects
// low-entropy passwords against guessing after a database leak; a 256-bit
// random token cannot be guessed from its hash either way, and a fast hash
// keeps the per-call check cheap. Pure (but for the random bytes).
import { createHash, randomBytes } from 'node:crypto';

export const TOKEN_PREFIX = 'fwt_';
const TOKEN_RE = /^fwt_[A-Za-z0-9_-]{43}$/;

export function generateToken(): string {
  return `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** Cheap shape check before any look-up: garbage never reaches the store. */
export function looksLikeToken(text: string): boolean {
  return TOKEN_RE.test(text);
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** The token of an `authorization` header value ("Bearer <token>", case-insensitive scheme), or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : header.trim() === '' ? undefined : '';
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$/;

/** Token names: 1-64 of letters, digits and . _ @ : - (shown in the audit log as token:<id>/<name>). */
export function validTokenName(name: string): boolean {
  return NAME_RE.test(name);
}
