// ListRules page tokens: opaque to clients, bound to the filters they were
// issued for (a token used with other filters is rejected, not misapplied).
import { createHash } from 'node:crypto';
import { FleetwallError } from '../errors/fleetwall-error.js';

export function filterFingerprint(filter: unknown): string {
  return createHash('sha256').update(JSON.stringify(filter)).digest('base64url').slice(0, 16);
}

export function encodePageToken(afterId: bigint, fingerprint: string): string {
  return Buffer.from(JSON.stringify({ a: afterId.toString(), f: fingerprint })).toString('base64url');
}

export function decodePageToken(token: string, fingerprint: string): bigint {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const p = parsed as { a?: unknown; f?: unknown } | undefined;
  if (!p || typeof p.a !== 'string' || !/^\d+$/.test(p.a) || typeof p.f !== 'string') {
    throw new FleetwallError(
      'INVALID_PAGE_TOKEN',
      'page_token is not one this server issued: pass next_page_token from the previous response unchanged',
    );
  }
  if (p.f !== fingerprint) {
    throw new FleetwallError(
      'INVALID_PAGE_TOKEN',
      'page_token was issued for different filters: keep every filter the same while paging, or start again without a token',
    );
  }
  return BigInt(p.a);
}
