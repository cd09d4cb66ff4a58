// Enrolled nodes in Postgres (migration 7): node_identities (the labels bound
// at enrollment, changed only by an admin) and node_certificates (every node
// certificate issued here, by serial: the revocation list). A revocation or
// a relabel is announced on NOTIFY fleetwall_node_identity so every
// control-plane process closes the node's stream at once
// (enrollment/node-admission.ts).
import type { Sql } from 'postgres';
import { applyAuditNote, currentAuditNote } from './audit-note.js';

export const NODE_IDENTITY_CHANNEL = 'fleetwall_node_identity';

export interface NodeIdentityNotice {
  readonly op: 'revoke' | 'relabel';
  readonly node: string;
}

export interface NodeIdentityRow {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly labels_epoch: bigint;
  readonly needs_snapshot: boolean;
}

/** What a Sync stream or a renewal presenting certificate `serial` is entitled to. */
export interface CertificateStanding {
  /** The node the certificate was issued to. */
  readonly node_name: string;
  readonly revoked: boolean;
  /** The node's identity (undefined only if it was removed). */
  readonly identity: NodeIdentityRow | undefined;
}

export class NodeIdentityStore {
  constructor(private readonly sql: Sql) {}

  /** The standing of a certificate (one query); undefined: not issued here. */
  async standing(serial: string): Promise<CertificateStanding | undefined> {
    const [r] = await this.sql<
      {
        node_name: string;
        revoked: boolean;
        name: string | null;
        labels: Record<string, string> | null;
        labels_epoch: bigint | null;
        needs_snapshot: boolean | null;
      }[]
    >`
      select c.node_name, c.revoke_time is not null as revoked, i.name, i.labels, i.labels_epoch, i.needs_snapshot
      from node_certificates c left join node_identities i on i.name = c.node_name
      where c.serial = ${serial}`;
    if (!r) return undefined;
    return {
      node_name: r.node_name,
      revoked: r.revoked,
      identity:
        r.name === null
          ? undefined
          : { name: r.name, labels: r.labels ?? {}, labels_epoch: BigInt(r.labels_epoch ?? 1n), needs_snapshot: r.needs_snapshot === true },
    };
  }

  /** Of these serials, the ones revoked (a check for missed notifications). */
  async revokedAmong(serials: readonly string[]): Promise<Set<string>> {
    if (serials.length === 0) return new Set();
    const rows = await this.sql<{ serial: string }[]>`
      select serial from node_certificates where serial = any(${serials as string[]}) and revoke_time is not null`;
    return new Set(rows.map((r) => r.serial));
  }

  /** Records a renewed certificate. */
  async recordCertificate(serial: string, nodeName: string, expireTime: Date): Promise<void> {
    await this.sql`insert into node_certificates (serial, node_name, expire_time) values (${serial}, ${nodeName}, ${expireTime})`;
  }

  /** The node's snapshot with its current labels was applied: resuming is safe again (unless relabeled since). */
  async snapshotApplied(name: string, epoch: bigint): Promise<void> {
    await this.sql`
      update node_identities set needs_snapshot = false
      where name = ${name} and labels_epoch = ${epoch.toString()}::bigint and needs_snapshot`;
  }

  async get(name: string): Promise<NodeIdentityRow | undefined> {
    const [r] = await this.sql<NodeIdentityRow[]>`
      select name, labels, labels_epoch, needs_snapshot from node_identities where name = ${name}`;
    return r;
  }

  /** An admin sets the node's labels; undefined: not enrolled. Its next Sync is a snapshot. */
  async relabel(name: string, labels: Record<string, string>, by: string): Promise<NodeIdentityRow | undefined> {
    const note = currentAuditNote();
    return (await this.sql.begin(async (tx) => {
      await applyAuditNote(tx, note);
      const [before] = await tx<NodeIdentityRow[]>`
        select name, labels, labels_epoch, needs_snapshot from node_identities where name = ${name} for update`;
      if (!before) return undefined;
      const [row] = await tx<(NodeIdentityRow & { changed: boolean })[]>`
        update node_identities set labels = ${tx.json(labels)}, update_time = now(), updated_by = ${by},
          labels_epoch = labels_epoch + (labels is distinct from ${tx.json(labels)}::jsonb)::int,
          needs_snapshot = needs_snapshot or labels is distinct from ${tx.json(labels)}::jsonb
        where name = ${name}
        returning name, labels, labels_epoch, needs_snapshot`;
      const changed = row!.labels_epoch !== before.labels_epoch;
      if (changed) {
        await tx`update nodes set labels = ${tx.json(labels)} where name = ${name}`;
        await tx`insert into audit_log (actor, action, write_id, before, after)
                 values (${by}, 'node.label', nextval('write_id_seq'),
                         ${JSON.stringify({ node: name, labels: before.labels })}::text::jsonb,
                         ${JSON.stringify({ node: name, labels })}::text::jsonb)`;
        await tx`select pg_notify(${NODE_IDENTITY_CHANNEL}, ${JSON.stringify({ op: 'relabel', node: name } satisfies NodeIdentityNotice)})`;
      }
      return row!;
    })) as NodeIdentityRow | undefined;
  }

  /** Revokes every certificate of the node; undefined: not enrolled. Returns how many were revoked now. */
  async revokeNode(name: string, by: string): Promise<number | undefined> {
    const note = currentAuditNote();
    return (await this.sql.begin(async (tx) => {
      await applyAuditNote(tx, note);
      const [known] = await tx`select 1 from node_identities where name = ${name} for update`;
      if (!known) return undefined;
      const rows = await tx<{ serial: string }[]>`
        update node_certificates set revoke_time = clock_timestamp(), revoked_by = ${by}
        where node_name = ${name} and revoke_time is null
        returning serial`;
      await tx`insert into audit_log (actor, action, write_id, after)
               values (${by}, 'node.revoke', nextval('write_id_seq'),
                       ${JSON.stringify({ node: name, serials: rows.map((r) => r.serial) })}::text::jsonb)`;
      await tx`select pg_notify(${NODE_IDENTITY_CHANNEL}, ${JSON.stringify({ op: 'revoke', node: name } satisfies NodeIdentityNotice)})`;
      return rows.length;
    })) as number | undefined;
  }
}
