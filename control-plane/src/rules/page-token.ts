// Page tokens (ListRules, ListNodes): opaque to clients, bound to the filters
// they were issued for (a token used with other filters is rejected, not
// misapplied) and signed with HMAC-SHA256 under a key every control plane of
// the store shares (meta.page_token_key), so a client cannot forge a cursor:
// anything the server did not issue is INVALID_PAGE_TOKEN.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { FleetwallError } from '../errors/fleetwall-error.js';

const MAX_TOKEN = 1024;

export function filterFingerprint(filter: unknown): string {
  return createHash('sha256').update(JSON.stringify(filter)).digest('base64url').slice(0, 16);
}

function notIssued(): FleetwallError {
  return new FleetwallError(
    'INVALID_PAGE_TOKEN',
    'page_token is not one this server issued: pass next_page_token from the previous response unchanged',
    { field: 'page_token' },
  );
}

export class PageTokens {
  constructor(private readonly key: string) {}

  private mac(payload: string): Buffer {
    return createHmac('sha256', this.key).update(payload).digest().subarray(0, 16);
  }

  /** A token for the page after `cursor` (a rule id, a node name) under these filters. */
  encode(cursor: string, fingerprint: string): string {
    const payload = Buffer.from(JSON.stringify({ a: cursor, f: fingerprint }));
    return `${payload.toString('base64url')}.${this.mac(payload.toString('base64url')).toString('base64url')}`;
  }

  /** The cursor of a token this server issued for these filters; INVALID_PAGE_TOKEN otherwise. */
  decode(token: string, fingerprint: string): string {
    const dot = token.indexOf('.');
    if (token.length > MAX_TOKEN || dot < 0) throw notIssued();
    const body = token.slice(0, dot);
    const mac = Buffer.from(token.slice(dot + 1), 'base64url');
    const want = this.mac(body);
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) throw notIssued();
    let p: { a?: unknown; f?: unknown } | undefined;
    try {
      p = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as typeof p;
    } catch {
      p = undefined;
    }
    if (!p || typeof p.a !== 'string' || typeof p.f !== 'string') throw notIssued();
    if (p.f !== fingerprint) {
      throw new FleetwallError(
        'INVALID_PAGE_TOKEN',
        'page_token was issued for different filters: keep every filter the same while paging, or start again without a token',
        { field: 'page_token' },
      );
    }
    return p.a;
  }

  /** A ListRules token: the last rule id of the previous page. */
  decodeId(token: string, fingerprint: string): bigint {
    const a = this.decode(token, fingerprint);
    if (!/^(0|[1-9]\d{0,18})$/.test(a) || BigInt(a) >= 1n << 63n) throw notIssued();
    return BigInt(a);
  }
}
