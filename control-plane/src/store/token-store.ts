// API tokens in Postgres (table api_tokens, migration 3) and their audit
// rows. Creating and revoking a token are audited like rule writes (actor =
// the admin's principal, note from the call) but take no revision: agents do
// not follow tokens. A revocation is announced on NOTIFY fleetwall_auth so
// every control-plane process drops it from its cache at once.
import type { Sql } from 'postgres';
import { applyAuditNote, currentAuditNote } from './audit-note.js';

export const AUTH_CHANNEL = 'fleetwall_auth';

/** pg_advisory_xact_lock key for the first admin token ("fwadmin" in ASCII). */
const FIRST_ADMIN_LOCK = 0x667761646d696en;

export interface TokenRow {
  readonly id: bigint;
  readonly name: string;
  readonly role: string;
  readonly created_by: string;
  readonly create_time: Date;
  readonly expire_time: Date | null;
  readonly revoke_time: Date | null;
  readonly revoked_by: string;
}

const COLUMNS = 'id, name, role, created_by, create_time, expire_time, revoke_time, revoked_by';

function image(r: TokenRow): string {
  return JSON.stringify({
    id: r.id.toString(),
    name: r.name,
    role: r.role,
    created_by: r.created_by,
    expire_time: r.expire_time,
    revoke_time: r.revoke_time,
  });
}

export class TokenStore {
  constructor(private readonly sql: Sql) {}

  async create(p: {
    name: string;
    role: string;
    secretSha256: Buffer;
    createdBy: string;
    expireTime: Date | undefined;
  }): Promise<TokenRow> {
    const note = currentAuditNote();
    return (await this.sql.begin(async (tx) => {
      await applyAuditNote(tx, note);
      const [row] = await tx<TokenRow[]>`
        insert into api_tokens (name, role, secret_sha256, created_by, expire_time)
        values (${p.name}, ${p.role}, ${p.secretSha256}, ${p.createdBy}, ${p.expireTime ?? null})
        returning ${tx.unsafe(COLUMNS)}`;
      await tx`insert into audit_log (actor, action, write_id, after)
               values (${p.createdBy}, 'token.create', nextval('write_id_seq'), ${image(row!)}::text::jsonb)`;
      return row!;
    })) as TokenRow;
  }

  /** Revokes a token (idempotent: an already revoked one is returned as it is); undefined when there is no such token. */
  async revoke(id: bigint, by: string): Promise<TokenRow | undefined> {
    const note = currentAuditNote();
    return (await this.sql.begin(async (tx) => {
      await applyAuditNote(tx, note);
      const [before] = await tx<TokenRow[]>`select ${tx.unsafe(COLUMNS)} from api_tokens where id = ${id.toString()}::bigint for update`;
      if (!before) return undefined;
      if (before.revoke_time !== null) return before;
      const [row] = await tx<TokenRow[]>`
        update api_tokens set revoke_time = clock_timestamp(), revoked_by = ${by} where id = ${id.toString()}::bigint
        returning ${tx.unsafe(COLUMNS)}`;
      await tx`insert into audit_log (actor, action, write_id, before, after)
               values (${by}, 'token.revoke', nextval('write_id_seq'), ${image(before)}::text::jsonb, ${image(row!)}::text::jsonb)`;
      await tx`select pg_notify(${AUTH_CHANNEL}, ${id.toString()})`;
      return row!;
    })) as TokenRow | undefined;
  }

  async list(includeRevoked: boolean): Promise<TokenRow[]> {
    return this.sql<TokenRow[]>`
      select ${this.sql.unsafe(COLUMNS)} from api_tokens
      where ${includeRevoked} or revoke_time is null
      order by id`;
  }

  async bySecret(secretSha256: Buffer): Promise<TokenRow | undefined> {
    const [row] = await this.sql<TokenRow[]>`select ${this.sql.unsafe(COLUMNS)} from api_tokens where secret_sha256 = ${secretSha256}`;
    return row;
  }

  /**
   * The first admin token: created (under an advisory lock, so processes
   * starting together make one) only when no admin token is usable.
   * Returns the row when it made one.
   */
  async createFirstAdmin(secretSha256: Buffer, createdBy: string): Promise<TokenRow | undefined> {
    return (await this.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${FIRST_ADMIN_LOCK.toString()}::bigint)`;
      const usable = await tx`
        select 1 from api_tokens where role = 'admin' and revoke_time is null and (expire_time is null or expire_time > now()) limit 1`;
      if (usable.length > 0) return undefined;
      const [row] = await tx<TokenRow[]>`
        insert into api_tokens (name, role, secret_sha256, created_by)
        values ('first-admin', 'admin', ${secretSha256}, ${createdBy})
        returning ${tx.unsafe(COLUMNS)}`;
      await tx`insert into audit_log (actor, action, write_id, after)
               values (${createdBy}, 'token.create', nextval('write_id_seq'), ${image(row!)}::text::jsonb)`;
      return row!;
    })) as TokenRow | undefined;
  }

  /** Whether some admin token is usable (not revoked, not expired). */
  async hasUsableAdmin(): Promise<boolean> {
    const rows = await this.sql`
      select 1 from api_tokens where role = 'admin' and revoke_time is null and (expire_time is null or expire_time > now()) limit 1`;
    return rows.length > 0;
  }
}
