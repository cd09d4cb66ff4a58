// Nodes in Postgres: reading them (a page at a time, by name), deleting one
// (operator; audited as node.delete by the caller's principal) and removing the ones gone longer than the retention (GC), each
// with its counters. A node counts as connected while a control plane serves
// its stream AND that process refreshed last_seen recently (pings every
// ping interval), so a control plane that died does not leave its nodes
// "connected" forever.
import type { Sql } from 'postgres';
import { InterfaceStatus, type Node } from '../../../proto/gen/fleetwall/v1/node.js';
import { SyncState } from '../../../proto/gen/fleetwall/v1/node.js';
import { Status } from '../../../proto/gen/google/rpc/status.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { applyAuditNote, currentAuditNote } from './audit-note.js';

interface NodeRow {
  name: string;
  labels: Record<string, string>;
  agent_version: string;
  interfaces: unknown[];
  connected: boolean;
  live: boolean;
  control_plane_id: string;
  first_seen: Date;
  last_seen: Date;
  applied_revision: bigint;
  sync_state: number;
  nacked_revision: bigint;
  last_nack: Buffer | null;
  rules_in_kernel: bigint;
  map_fill_ratio: number;
  capacity_per_table: bigint;
  kernel_memory_bytes: bigint;
  resize_grow_failures: bigint;
  resize_shrink_failures: bigint;
  last_resize_failure: string;
  last_resize_failure_time: Date | null;
}

function nodeFromRow(r: NodeRow): Node {
  const connected = r.connected && r.live;
  return {
    name: r.name,
    labels: { ...r.labels },
    connected,
    lastSeenTime: r.last_seen,
    appliedRevision: r.applied_revision,
    interfaces: (r.interfaces ?? []).map((i) => InterfaceStatus.fromJSON(i)),
    agentVersion: r.agent_version,
    syncState: connected ? r.sync_state : SyncState.SYNC_STATE_DISCONNECTED,
    nackedRevision: r.nacked_revision,
    lastNack: r.last_nack ? Status.decode(r.last_nack) : undefined,
    rulesInKernel: r.rules_in_kernel,
    mapFillRatio: r.map_fill_ratio,
    kernelMemoryBytes: r.kernel_memory_bytes,
    controlPlaneId: connected ? r.control_plane_id : '',
    firstSeenTime: r.first_seen,
    capacityPerTable: r.capacity_per_table,
    mapResizeFailures:
      r.resize_grow_failures === 0n && r.resize_shrink_failures === 0n && r.last_resize_failure === ''
        ? undefined
        : {
            grow: r.resize_grow_failures,
            shrink: r.resize_shrink_failures,
            lastReason: r.last_resize_failure,
            lastTime: r.last_resize_failure_time ?? undefined,
          },
  };
}

export class NodeStore {
  constructor(
    private readonly sql: Sql,
    /** last_seen older than this: not connected. */
    private readonly liveWindowMs: number,
    /** Reads: another pool, so they never wait for a write's connection. */
    private readonly readSql: Sql = sql,
  ) {}

  /** Nodes matching the filters with a name after `after`, by name, at most `limit`. */
  async list(selector: Readonly<Record<string, string>>, connectedOnly: boolean, after = '', limit = 1000): Promise<Node[]> {
    const rows = await this.readSql<NodeRow[]>`
      select *, last_seen > now() - make_interval(secs => ${this.liveWindowMs / 1000}) as live from nodes
      where labels @> ${this.sql.json(selector as never)} and name collate "C" > ${after}
        ${connectedOnly ? this.sql`and connected and last_seen > now() - make_interval(secs => ${this.liveWindowMs / 1000})` : this.sql``}
      order by name collate "C" limit ${limit}`;
    return rows.map(nodeFromRow);
  }

  /**
   * Deletes a node and its counters in one transaction. False if there is no
   * such node; throws NODE_CONNECTED while a control plane serves its stream.
   */
  /** Deletes node `name` and its counters, audited as `node.delete` by `actor`; false when there is no such node. */
  async delete(name: string, actor: string): Promise<boolean> {
    const note = currentAuditNote();
    return this.sql.begin(async (tx) => {
      await applyAuditNote(tx, note);
      const [n] = await tx<{ live: boolean }[]>`
        select connected and last_seen > now() - make_interval(secs => ${this.liveWindowMs / 1000}) as live
        from nodes where name = ${name} for update`;
      if (!n) return false;
      if (n.live) {
        throw new FleetwallError(
          'NODE_CONNECTED',
          `node ${name} has a live Sync stream; stop its agent (or wait until it is disconnected) before deleting it`,
          { node: name },
        );
      }
      await tx`insert into audit_log (actor, action, write_id, before)
               select ${actor}, 'node.delete', nextval('write_id_seq'), to_jsonb(n) - 'last_nack' from nodes n where n.name = ${name}`;
      await tx`delete from node_rule_counters where node_name = ${name}`;
      await tx`delete from node_interface_counters where node_name = ${name}`;
      await tx`delete from nodes where name = ${name}`;
      return true;
    }) as Promise<boolean>;
  }

  /** Removes nodes without a live stream whose last_seen is older than `retentionMs`, with their counters; returns their names. */
  async removeAbsent(retentionMs: number): Promise<string[]> {
    return this.sql.begin(async (tx) => {
      const gone = await tx<{ name: string }[]>`
        delete from nodes
        where last_seen < now() - make_interval(secs => ${retentionMs / 1000})
          and not (connected and last_seen > now() - make_interval(secs => ${this.liveWindowMs / 1000}))
        returning name`;
      const names = gone.map((g) => g.name);
      if (names.length > 0) {
        await tx`delete from node_rule_counters where node_name = any(${names})`;
        await tx`delete from node_interface_counters where node_name = any(${names})`;
      }
      return names;
    }) as Promise<string[]>;
  }

  async get(name: string): Promise<Node | undefined> {
    const rows = await this.readSql<NodeRow[]>`
      select *, last_seen > now() - make_interval(secs => ${this.liveWindowMs / 1000}) as live from nodes where name = ${name}`;
    return rows[0] ? nodeFromRow(rows[0]) : undefined;
  }

  /** Nodes that reported their kernel tables' capacity (capacity guard). */
  async capacities(): Promise<{ name: string; labels: Record<string, string>; capacity: number }[]> {
    const rows = await this.readSql<{ name: string; labels: Record<string, string>; capacity: string }[]>`
      select name, labels, capacity_per_table::text as capacity from nodes where capacity_per_table > 0`;
    return rows.map((r) => ({ name: r.name, labels: r.labels, capacity: Number(r.capacity) }));
  }

  async labels(name: string): Promise<Record<string, string> | undefined> {
    const rows = await this.readSql<{ labels: Record<string, string> }[]>`select labels from nodes where name = ${name}`;
    return rows[0]?.labels;
  }
}
