// Versioned schema migrations, applied at start in one transaction under an
// advisory lock, so several control planes starting together on one database
// apply each migration exactly once. Append new migrations; never edit one
// that has shipped.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** pg_advisory_xact_lock key for migrations ("fwmigr" in ASCII). */
const MIGRATION_LOCK = 0x66776d69677200n;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'rules, revisions, change log, nodes, counters, audit',
    sql: `
      -- Identity of this store: agents keep it with their applied revision.
      create table meta (key text primary key, value text not null);
      insert into meta (key, value) values
        ('store_id', gen_random_uuid()::text),
        -- Highest revision whose change-log rows were pruned; resuming from
        -- before it needs a snapshot.
        ('log_floor', '0');

      -- The revision counter. Every write transaction increments it as its
      -- LAST statement: the row lock is held until commit, so revisions are
      -- gap-free and commit in order.
      create table revision_counter (id int primary key check (id = 1), value bigint not null);
      insert into revision_counter (id, value) values (1, 0);

      -- Rows are written before the revision is known; they carry the
      -- transaction's write_id, mapped to its revision at commit.
      create sequence write_id_seq;

      create table revisions (
        revision bigint primary key,
        write_id bigint not null unique,
        commit_time timestamptz not null,
        actor text not null,
        kind text not null,
        change_count bigint not null
      );

      create table rules (
        id bigserial primary key,
        cidr cidr not null,
        action smallint not null check (action in (1, 2)),
        direction smallint not null check (direction in (1, 2)),
        selector jsonb not null default '{}',
        -- Canonical JSON of selector (sorted keys): part of the rule identity.
        selector_key text not null,
        mode smallint not null check (mode in (1, 2)),
        expire_time timestamptz,
        comment text not null default '',
        create_time timestamptz not null,
        update_time timestamptz not null,
        write_id bigint not null,
        created_by text not null default '',
        check (not (action = 2 and mode = 2))
      );
      -- A duplicate is the same CIDR, direction and selector, whatever the action.
      create unique index rules_identity on rules (cidr, direction, selector_key);
      -- "Which rules cover this address": cidr >>= address.
      create index rules_cidr_gist on rules using gist (cidr inet_ops);
      create index rules_write_id on rules (write_id);
      create index rules_expire_time on rules (expire_time) where expire_time is not null;

      -- The change log: one row per rule change (op 1 upsert, 2 delete), or
      -- one row for a bulk import (op 3, rule_id null: every rule whose
      -- write_id is this one). Pruned after the retention period.
      create table changes (
        write_id bigint not null,
        rule_id bigint,
        op smallint not null check (op in (1, 2, 3))
      );
      create index changes_write_id on changes (write_id);

      -- Who changed what, when, before and after. Append-only.
      create table audit_log (
        id bigserial primary key,
        time timestamptz not null default clock_timestamp(),
        actor text not null,
        action text not null,
        rule_id bigint,
        write_id bigint not null,
        before jsonb,
        after jsonb
      );
      create index audit_log_rule_id on audit_log (rule_id);
      create function audit_log_append_only() returns trigger language plpgsql as $fn$
        begin
          raise exception 'audit_log is append-only';
        end
      $fn$;
      create trigger audit_log_no_rewrite before update or delete or truncate on audit_log
        for each statement execute function audit_log_append_only();

      create table nodes (
        name text primary key,
        labels jsonb not null default '{}',
        agent_version text not null default '',
        agent_instance_id text not null default '',
        interfaces jsonb not null default '[]',
        connected boolean not null default false,
        control_plane_id text not null default '',
        first_seen timestamptz not null default now(),
        last_seen timestamptz not null default now(),
        applied_revision bigint not null default 0,
        sync_state smallint not null default 0,
        nacked_revision bigint not null default 0,
        last_nack bytea,
        rules_in_kernel bigint not null default 0,
        map_fill_ratio double precision not null default 0,
        last_error text not null default ''
      );

      -- Counter totals and the last cumulative value each agent reported.
      create table node_rule_counters (
        node_name text not null,
        rule_id bigint not null,
        packets numeric(20, 0) not null default 0,
        bytes numeric(20, 0) not null default 0,
        last_packets numeric(20, 0) not null default 0,
        last_bytes numeric(20, 0) not null default 0,
        primary key (node_name, rule_id)
      );
      create index node_rule_counters_rule_id on node_rule_counters (rule_id);

      create table node_interface_counters (
        node_name text not null,
        interface text not null,
        direction smallint not null,
        totals numeric(20, 0)[] not null,
        last numeric(20, 0)[] not null,
        primary key (node_name, interface, direction)
      );
    `,
  },
  {
    version: 2,
    name: 'GiST only for prefixes shorter than a host address',
    sql: `
      -- Single addresses (/32, /128) are most of a large block list; they are
      -- found by equality through rules_identity (cidr is its first column).
      -- The GiST index answers "cidr >>= address" for the shorter prefixes
      -- only, which halves its cost on imports (rule-store.ts COVERS_SQL).
      drop index rules_cidr_gist;
      create index rules_cidr_gist on rules using gist (cidr inet_ops)
        where masklen(cidr) < (case family(cidr) when 4 then 32 else 128 end);
    `,
  },
  {
    version: 3,
    name: 'API tokens; audit note',
    sql: `
      -- Operators' API tokens (control-plane/src/auth/): only the SHA-256 of
      -- the token is kept; the token itself is shown once, at creation.
      create table api_tokens (
        id bigserial primary key,
        name text not null,
        role text not null check (role in ('viewer', 'operator', 'admin')),
        secret_sha256 bytea not null unique,
        created_by text not null,
        create_time timestamptz not null default now(),
        expire_time timestamptz,
        revoke_time timestamptz,
        revoked_by text not null default ''
      );

      -- audit_log.actor is the authenticated principal; what a client says
      -- about itself (x-fleetwall-actor) is only a free-text note. Writes set
      -- it per transaction (store/audit-note.ts).
      alter table audit_log add column note text not null default '';
      alter table audit_log alter column note set default coalesce(current_setting('fleetwall.audit_note', true), '');
      create index audit_log_actor on audit_log (actor, id);
    `,
  },
  {
    version: 4,
    name: 'subscribed lists; rules.list_id',
    sql: `
      -- Subscriptions to published blocklists (control-plane/src/lists/).
      create table lists (
        id bigserial primary key,
        name text not null unique,
        -- http(s):// fetched, or file:/// read on the control plane's host.
        url text not null,
        every_ms bigint not null check (every_ms > 0),
        -- BlocklistFormat (0: detect) and the CSV column / JSON field.
        format smallint not null default 0,
        column_name text not null default '',
        -- What every rule of the list is (as an import's header).
        action smallint not null check (action in (1, 2)),
        direction smallint not null check (direction in (1, 2)),
        selector jsonb not null default '{}',
        selector_key text not null,
        mode smallint not null check (mode in (1, 2)),
        allow_private boolean not null default false,
        comment text not null default '',
        create_time timestamptz not null default now(),
        created_by text not null default '',
        -- Conditional-fetch validators (a file: its size and mtime in etag).
        etag text not null default '',
        last_modified text not null default '',
        -- Rules the list owns, as of its last write.
        entries bigint not null default 0,
        next_run timestamptz not null,
        -- The last refresh (RefreshResult, proto3 JSON) and the last good one.
        last_refresh jsonb,
        last_success_time timestamptz
      );
      create index lists_next_run on lists (next_run);

      -- The list a rule belongs to (null: an operator's own rule). No foreign
      -- key: list writes lock the list row first, and a constraint would run
      -- a trigger per inserted rule (a million on a first refresh).
      alter table rules add column list_id bigint;
      create index rules_list_id on rules (list_id) where list_id is not null;
    `,
  },
  {
    version: 5,
    name: 'lockout guard: node peer address and failsafe entries; audit forced',
    sql: `
      -- The address each node's Sync stream comes from (the lockout guard
      -- protects it, in every control-plane process), and the failsafe
      -- entries its agent reports (Explain shows them when they decide).
      alter table nodes add column peer_address text not null default '';
      alter table nodes add column failsafe jsonb not null default '[]';
      -- What an admin's forced override of the lockout guard overrode; set
      -- per transaction like the note (store/audit-forced.ts).
      alter table audit_log add column forced text not null default '';
      alter table audit_log alter column forced set default coalesce(current_setting('fleetwall.audit_forced', true), '');
    `,
  },
  {
    version: 6,
    name: 'nodes: kernel memory of the agent maps',
    sql: `
      -- AgentStatus.kernel_memory_bytes: the memlock of fleetwall's maps on the node (they follow its rules).
      alter table nodes add column kernel_memory_bytes bigint not null default 0;
    `,
  },
  {
    version: 7,
    name: 'node enrollment: join tokens, node identities, node certificates',
    sql: `
      -- Join tokens (control-plane/src/enrollment/): "<id>.<secret>" as
      -- Kubernetes bootstrap tokens; only the SHA-256 of the secret is kept.
      -- Single use: used_time is set in the transaction that issues the
      -- certificate.
      create table join_tokens (
        id text primary key,
        secret_sha256 bytea not null,
        node_name text not null default '',
        labels jsonb not null default '{}',
        created_by text not null,
        create_time timestamptz not null default now(),
        expire_time timestamptz not null,
        use_time timestamptz,
        used_by_node text not null default '',
        revoke_time timestamptz,
        revoked_by text not null default ''
      );

      -- A node's identity, bound at enrollment, kept apart from its status
      -- row (nodes): its labels (what policy it receives; only an admin
      -- changes them), and whether its next Sync must be a snapshot because
      -- the labels changed since its kernel state was built.
      create table node_identities (
        name text primary key,
        labels jsonb not null default '{}',
        labels_epoch bigint not null default 1,
        needs_snapshot boolean not null default false,
        enrolled_by text not null,
        enroll_time timestamptz not null default now(),
        update_time timestamptz not null default now(),
        updated_by text not null default ''
      );

      -- Every node certificate this control plane issued, by serial: Sync
      -- and renewal refuse one that is revoked (or unknown here).
      create table node_certificates (
        serial text primary key,
        node_name text not null,
        issue_time timestamptz not null default now(),
        expire_time timestamptz not null,
        revoke_time timestamptz,
        revoked_by text not null default ''
      );
      create index node_certificates_node on node_certificates (node_name);
    `,
  },
  {
    version: 8,
    name: 'node capacity, page token key, node retention',
    sql: `
      -- Hello.capacity_per_table: prefixes each of the node's kernel tables
      -- holds; writes that would overfill it are refused (0: not reported).
      alter table nodes add column capacity_per_table bigint not null default 0;
      -- Nodes are removed after FLEETWALL_NODE_RETENTION without a stream.
      create index nodes_last_seen on nodes (last_seen) where not connected;
      -- Signs page tokens; shared by every control plane of this store.
      insert into meta (key, value) values ('page_token_key', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
    `,
  },
  {
    version: 9,
    name: 'detection policies and their bans',
    sql: `
      -- Detection policies (issue 18, control-plane/src/respond/): the validated spec as JSON.
      create table policies (
        id bigserial primary key,
        name text not null unique,
        spec jsonb not null,
        create_time timestamptz not null default now(),
        write_id bigint not null,
        created_by text not null,
        detections bigint not null default 0,
        bans bigint not null default 0,
        exempted bigint not null default 0
      );
      -- One row per (policy, source group, direction) a policy has banned: the
      -- offences (escalation) outlive the ban rule, which expires like any rule.
      create table bans (
        policy_id bigint not null,
        policy text not null,
        source cidr not null,
        direction smallint not null,
        rule_id bigint,
        node text not null,
        offences int not null,
        expire_time timestamptz not null,
        pps double precision not null default 0,
        bps double precision not null default 0,
        first_time timestamptz not null default now(),
        last_time timestamptz not null default now(),
        primary key (policy_id, source, direction)
      );
      create index bans_rule_id on bans (rule_id);
    `,
  },
  {
    version: 10,
    name: 'nodes: failed resizes of the agent maps',
    sql: `
      -- AgentStatus.map_resize_failures: grows and shrinks of the node's kernel
      -- maps that failed since its agent started, the last one's reason ('' none,
      -- or a resize went in since) and time.
      alter table nodes
        add column resize_grow_failures bigint not null default 0,
        add column resize_shrink_failures bigint not null default 0,
        add column last_resize_failure text not null default '',
        add column last_resize_failure_time timestamptz;
    `,
  },
];

export async function migrate(sql: Sql, logger: Logger): Promise<number> {
  return sql.begin(async (tx) => {
    // A migration may rewrite a large table: no statement timeout here.
    await tx`set local statement_timeout = 0`;
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK.toString()}::bigint)`;
    await tx`create table if not exists schema_migrations (
      version int primary key, name text not null, applied_at timestamptz not null default now())`;
    const rows = await tx<{ version: number }[]>`select version from schema_migrations`;
    const done = new Set(rows.map((r) => Number(r.version)));
    const latest = Math.max(0, ...done);
    const known = Math.max(...MIGRATIONS.map((m) => m.version));
    if (latest > known) {
      throw new Error(
        `the database schema is at version ${latest}, newer than this control plane knows (${known}); upgrade the control plane`,
      );
    }
    let applied = 0;
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      logger.info({ version: m.version, name: m.name }, 'applying migration');
      await tx.unsafe(m.sql);
      await tx`insert into schema_migrations (version, name) values (${m.version}, ${m.name})`;
      applied++;
    }
    return applied;
  });
}
