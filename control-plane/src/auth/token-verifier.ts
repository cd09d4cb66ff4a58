// Verifies API tokens against the store, with a small cache so the hot path
// (every call of a busy client) costs a SHA-256 and a map look-up. An entry
// is trusted for FLEETWALL_AUTH_CACHE_TTL (500 ms; at most 1 s) from the
// moment its look-up was sent, after which the store is asked again; a
// revocation is also pushed to every process by NOTIFY fleetwall_auth and
// drops the entry at once. Either way a revoked token is refused everywhere
// within a second. Unknown tokens are remembered (bounded): a token the
// server did not issue can never become valid.
//
// A token in use is looked up again in the background once its entry is half
// the TTL old (refresh-ahead), so a busy client's calls never wait for the
// store; and calls that do need the store for one token share one look-up
// (single flight), instead of each sending its own while the first is out.
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
  /** Look-ups on their way, by key: callers for one token share one. */
  private readonly inflight = new Map<string, Promise<Entry | undefined>>();
  /** Bumped by every drop: a look-up sent before it does not put its (maybe older) row back. */
  private generation = 0;
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
      () => {
        this.generation++;
        this.byHash.clear();
      },
    );
    this.unlisten = meta.unlisten;
    logger.debug('listening for token revocations');
  }

  async stop(): Promise<void> {
    await this.unlisten?.().catch(() => undefined);
  }

  private dropToken(idText: string): void {
    this.generation++;
    for (const [k, e] of this.byHash) if (e.row.id.toString() === idText) this.byHash.delete(k);
  }

  private decide(e: Entry): TokenCheck {
    if (e.row.revoke_time !== null) return { ok: false, reason: 'TOKEN_REVOKED', tokenId: e.row.id };
    if (e.row.expire_time !== null && e.row.expire_time.getTime() <= this.now())
      return { ok: false, reason: 'TOKEN_EXPIRED', tokenId: e.row.id };
    if (!e.principal) return { ok: false, reason: 'TOKEN_UNKNOWN' };
    return { ok: true, principal: e.principal };
  }

  /**
   * The cached answer if it is fresh, without waiting for any I/O (the hot
   * path); undefined: call verify(). A fresh entry past half its TTL is
   * looked up again in the background.
   */
  cached(token: string): TokenCheck | undefined {
    if (!looksLikeToken(token)) return { ok: false, reason: 'TOKEN_UNKNOWN' };
    const hash = hashToken(token);
    const key = hash.toString('base64');
    if (this.unknown.has(key)) return { ok: false, reason: 'TOKEN_UNKNOWN' };
    const e = this.byHash.get(key);
    if (!e) return undefined;
    // Revoked stays revoked: no need to ask again.
    if (e.row.revoke_time !== null) return this.decide(e);
    const age = this.now() - e.at;
    if (age >= this.ttlMs) return undefined;
    if (age >= this.ttlMs / 2 && !this.inflight.has(key)) this.load(hash, key).catch(() => undefined);
    return this.decide(e);
  }

  async verify(token: string): Promise<TokenCheck> {
    const hit = this.cached(token);
    if (hit) return hit;
    const hash = hashToken(token);
    const e = await this.load(hash, hash.toString('base64'));
    return e ? this.decide(e) : { ok: false, reason: 'TOKEN_UNKNOWN' };
  }

  /** One look-up of `key` at a time; the entry it made (undefined: no such token). */
  private load(hash: Buffer, key: string): Promise<Entry | undefined> {
    const running = this.inflight.get(key);
    if (running !== undefined) return running;
    const at = this.now();
    const generation = this.generation;
    const p = this.store
      .bySecret(hash)
      .then((row): Entry | undefined => {
        if (!row) {
          this.byHash.delete(key);
          if (this.unknown.size >= MAX_UNKNOWN) this.unknown.delete(this.unknown.values().next().value!);
          this.unknown.add(key);
          return undefined;
        }
        const principal = isRole(row.role) ? tokenPrincipal(row.id, row.name, row.role) : undefined;
        const e: Entry = { row, principal, at };
        // A drop (revocation) since the look-up was sent: answer this caller, but keep nothing.
        if (generation !== this.generation) return e;
        if (!this.byHash.has(key) && this.byHash.size >= MAX_ENTRIES) this.byHash.delete(this.byHash.keys().next().value!);
        this.byHash.set(key, e);
        return e;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }
}
