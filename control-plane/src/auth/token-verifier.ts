// Verifies API tokens against the store, with a small cache so the hot path
// (every call of a busy client) costs a SHA-256 and a map look-up. An entry
// is trusted for FLEETWALL_AUTH_CACHE_TTL (500 ms; at most 1 s), after which
// the store is asked again; a revocation is also pushed to every process by
// NOTIFY fleetwall_auth and drops the entry at once. Either way a revoked
// token is refused everywhere within a second. Unknown tokens are remembered
// (bounded): a token the server did not issue can never become valid.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import { AUTH_CHANNEL, type TokenRow, type TokenStore } from '../store/token-store.js';
import { hashToken, looksLikeToken } from './api-token.js';
import { type Principal, tokenPrincipal } from './principal.js';
import { isRole } from './roles.js';

export type TokenCheck =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly reason: 'TOKEN_UNKNOWN' | 'TOKEN_EXPIRED' | 'TOKEN_REVOKED'; readonly tokenId?: bigint };

interface Entry {
  readonly row: TokenRow;
  readonly principal: Principal | undefined;
  readonly at: number;
}

const MAX_ENTRIES = 10_000;
const MAX_UNKNOWN = 4096;

export class TokenVerifier {
  private readonly byHash = new Map<string, Entry>();
  private readonly unknown = new Set<string>();
  private unlisten: (() => Promise<void>) | undefined;

  constructor(
    private readonly store: Pick<TokenStore, 'bySecret'>,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Subscribes to revocations (every process on the database). */
  async listen(sql: Sql, logger: Logger): Promise<void> {
    const meta = await sql.listen(
      AUTH_CHANNEL,
      (payload) => this.dropToken(payload),
      // (Re)subscribed, maybe after a lost connection: notifications may have been missed.
      () => this.byHash.clear(),
    );
    this.unlisten = meta.unlisten;
    logger.debug('listening for token revocations');
  }

  async stop(): Promise<void> {
    await this.unlisten?.().catch(() => undefined);
  }

  private dropToken(idText: string): void {
    for (const [k, e] of this.byHash) if (e.row.id.toString() === idText) this.byHash.delete(k);
  }

  private decide(e: Entry): TokenCheck {
    if (e.row.revoke_time !== null) return { ok: false, reason: 'TOKEN_REVOKED', tokenId: e.row.id };
    if (e.row.expire_time !== null && e.row.expire_time.getTime() <= this.now())
      return { ok: false, reason: 'TOKEN_EXPIRED', tokenId: e.row.id };
    if (!e.principal) return { ok: false, reason: 'TOKEN_UNKNOWN' };
    return { ok: true, principal: e.principal };
  }

  /** The cached answer if it is fresh, without any I/O (the hot path); undefined: call verify(). */
  cached(token: string): TokenCheck | undefined {
    if (!looksLikeToken(token)) return { ok: false, reason: 'TOKEN_UNKNOWN' };
    const key = hashToken(token).toString('base64');
    if (this.unknown.has(key)) return { ok: false, reason: 'TOKEN_UNKNOWN' };
    const e = this.byHash.get(key);
    if (!e) return undefined;
    // Revoked stays revoked: no need to ask again.
    if (e.row.revoke_time !== null || this.now() - e.at < this.ttlMs) return this.decide(e);
    return undefined;
  }

  async verify(token: string): Promise<TokenCheck> {
    const hit = this.cached(token);
    if (hit) return hit;
    const hash = hashToken(token);
    const key = hash.toString('base64');
    const row = await this.store.bySecret(hash);
    if (!row) {
      if (this.unknown.size >= MAX_UNKNOWN) this.unknown.delete(this.unknown.values().next().value!);
      this.unknown.add(key);
      return { ok: false, reason: 'TOKEN_UNKNOWN' };
    }
    const principal = isRole(row.role) ? tokenPrincipal(row.id, row.name, row.role) : undefined;
    const e: Entry = { row, principal, at: this.now() };
    if (this.byHash.size >= MAX_ENTRIES) this.byHash.delete(this.byHash.keys().next().value!);
    this.byHash.set(key, e);
    return this.decide(e);
  }
}
