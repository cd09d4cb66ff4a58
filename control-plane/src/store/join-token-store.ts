// Join tokens in Postgres (table join_tokens, migration 4) and the one
// transaction that uses one up: enrollment (enrollment/enrollment-service.ts).
// Creating and revoking a token are audited like API tokens (no revision:
// agents do not follow tokens). Only the SHA-256 of the secret is stored.
import type { Sql, TransactionSql } from 'postgres';
import { applyAuditNote, currentAuditNote } from './audit-note.js';
import { NODE_IDENTITY_CHANNEL, type NodeIdentityNotice } from './node-identity-store.js';

export interface JoinTokenRow {
  readonly id: string;
  readonly node_name: string;
  readonly labels: Record<string, string>;
  readonly created_by: string;
  readonly create_time: Date;
  readonly expire_time: Date;
  readonly use_time: Date | null;
  readonly used_by_node: string;
  readonly revoke_time: Date | null;
  readonly revoked_by: string;
}

const COLUMNS = 'id, node_name, labels, created_by, create_time, expire_time, use_time, used_by_node, revoke_time, revoked_by';

function image(r: JoinTokenRow): string {
  return JSON.stringify({
    id: r.id,
    node_name: r.node_name,
    labels: r.labels,
    expire_time: r.expire_time,
    use_time: r.use_time,
    used_by_node: r.used_by_node,
    revoke_time: r.revoke_time,
  });
}

/** A certificate issued in the enrollment transaction. */
export interface IssuedCertificate {
  readonly nodeName: string;
  readonly certPem: string;
  readonly serial: string;
  readonly expireTime: Date;
}

/** Decides an enrollment with the locked token row (throws to refuse: nothing is stored). */
export type EnrollDecision = (row: JoinTokenRow & { readonly secret_sha256: Buffer }) => Promise<IssuedCertificate>;

export class JoinTokenStore {
  constructor(private readonly sql: Sql) {}

  async create(p: {
    id: string;
    secretSha256: Buffer;
    nodeName: string;
    labels: Record<string, string>;
    createdBy: string;
    expireTime: Date;
  }): Promise<JoinTokenRow> {
    const note = currentAuditNote();
    return (await this.sql.begin(async (tx) => {
      await applyAuditNote(tx, note);
      const [row] = await tx<JoinTokenRow[]>`
        insert into join_tokens (id, secret_sha256, node_name, labels, created_by, expire_time)
        values (${p.id}, ${p.secretSha256}, ${p.nodeName}, ${tx.json(p.labels)}, ${p.createdBy}, ${p.expireTime})
        returning ${tx.unsafe(COLUMNS)}`;
      await tx`insert into audit_log (actor, action, write_id, after)
               values (${p.createdBy}, 'join_token.create', nextval('write_id_seq'), ${image(row!)}::text::jsonb)`;
      return row!;
    })) as JoinTokenRow;
  }

  /** Revokes a token (idempotent); undefined when there is no such token. */
  async revoke(id: string, by: string): Promise<JoinTokenRow | undefined> {
    const note = currentAuditNote();
    return (await this.sql.begin(async (tx) => {
      await applyAuditNote(tx, note);
      const [before] = await tx<JoinTokenRow[]>`select ${tx.unsafe(COLUMNS)} from join_tokens where id = ${id} for update`;
      if (!before) return undefined;
      if (before.revoke_time !== null) return before;
      const [row] = await tx<JoinTokenRow[]>`
        update join_tokens set revoke_time = clock_timestamp(), revoked_by = ${by} where id = ${id}
        returning ${tx.unsafe(COLUMNS)}`;
      await tx`insert into audit_log (actor, action, write_id, before, after)
               values (${by}, 'join_token.revoke', nextval('write_id_seq'), ${image(before)}::text::jsonb, ${image(row!)}::text::jsonb)`;
      return row!;
    })) as JoinTokenRow | undefined;
  }

  /** Unused, unexpired, unrevoked tokens (all of them with `includeInactive`), oldest first. */
  async list(includeInactive: boolean): Promise<JoinTokenRow[]> {
    return this.sql<JoinTokenRow[]>`
      select ${this.sql.unsafe(COLUMNS)} from join_tokens
      where ${includeInactive} or (use_time is null and revoke_time is null and expire_time > now())
      order by create_time, id`;
  }

  /**
   * Uses token `id` up, in one transaction with everything enrollment writes:
   * the token row is locked (a concurrent second use waits, then finds it
   * used), `decide` checks it and issues the certificate, then the token is
   * marked used, the node's identity (labels) is bound, the certificate is
   * recorded and the enrollment audited. Undefined: no such token.
   */
  async enroll(id: string, decide: EnrollDecision): Promise<{ token: JoinTokenRow; issued: IssuedCertificate } | undefined> {
    const note = currentAuditNote();
    return (await this.sql.begin(async (tx) => {
      await applyAuditNote(tx, note);
      const [row] = await tx<(JoinTokenRow & { secret_sha256: Buffer })[]>`
        select ${tx.unsafe(COLUMNS)}, secret_sha256 from join_tokens where id = ${id} for update`;
      if (!row) return undefined;
      const issued = await decide(row);
      const [token] = await tx<JoinTokenRow[]>`
        update join_tokens set use_time = clock_timestamp(), used_by_node = ${issued.nodeName} where id = ${id}
        returning ${tx.unsafe(COLUMNS)}`;
      const actor = `join-token:${id}`;
      const relabeled = await bindIdentity(tx, issued.nodeName, row.labels, actor);
      await tx`insert into node_certificates (serial, node_name, expire_time)
               values (${issued.serial}, ${issued.nodeName}, ${issued.expireTime})`;
      await tx`insert into audit_log (actor, action, write_id, after)
               values (${actor}, 'node.enroll', nextval('write_id_seq'),
                       ${JSON.stringify({ node: issued.nodeName, labels: row.labels, serial: issued.serial, expire_time: issued.expireTime })}::text::jsonb)`;
      if (relabeled) await notify(tx, { op: 'relabel', node: issued.nodeName });
      return { token: token!, issued };
    })) as { token: JoinTokenRow; issued: IssuedCertificate } | undefined;
  }
}

/** Binds a node's labels at enrollment; true when an earlier enrollment had other labels (its next Sync is a snapshot). */
async function bindIdentity(tx: TransactionSql, name: string, labels: Record<string, string>, by: string): Promise<boolean> {
  const [old] = await tx<{ same: boolean }[]>`
    select labels = ${tx.json(labels)}::jsonb as same from node_identities where name = ${name} for update`;
  await tx`
    insert into node_identities (name, labels, enrolled_by, updated_by) values (${name}, ${tx.json(labels)}, ${by}, ${by})
    on conflict (name) do update set
      labels = excluded.labels, enrolled_by = excluded.enrolled_by, enroll_time = now(), update_time = now(),
      updated_by = excluded.updated_by,
      labels_epoch = node_identities.labels_epoch + ${old && !old.same ? 1 : 0},
      needs_snapshot = node_identities.needs_snapshot or ${old !== undefined && !old.same}`;
  await tx`update nodes set labels = ${tx.json(labels)} where name = ${name}`;
  return old !== undefined && !old.same;
}

async function notify(tx: TransactionSql, n: NodeIdentityNotice): Promise<void> {
  await tx`select pg_notify(${NODE_IDENTITY_CHANNEL}, ${JSON.stringify(n)})`;
}
