// Reading nodes. A node counts as connected while a control plane serves
// its stream AND that process refreshed last_seen recently (pings every
// ping interval), so a control plane that died does not leave its nodes
// "connected" forever.
import type { Sql } from 'postgres';
import { InterfaceStatus, type Node } from '../../../proto/gen/fleetwall/v1/node.js';
import { SyncState } from '../../../proto/gen/fleetwall/v1/node.js';
import { Status } from '../../../proto/gen/google/rpc/status.js';

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
  kernel_memory_bytes: bigint;
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
  };
}

export class NodeStore {
  constructor(
    private readonly sql: Sql,
    /** last_seen older than this: not connected. */
    private readonly liveWindowMs: number,
  ) {}

  async list(selector: Readonly<Record<string, string>>, connectedOnly: boolean): Promise<Node[]> {
    const rows = await this.sql<NodeRow[]>`
      select *, last_seen > now() - make_interval(secs => ${this.liveWindowMs / 1000}) as live from nodes
      where labels @> ${this.sql.json(selector as never)}
        ${connectedOnly ? this.sql`and connected and last_seen > now() - make_interval(secs => ${this.liveWindowMs / 1000})` : this.sql``}
      order by name`;
    return rows.map(nodeFromRow);
  }

  async get(name: string): Promise<Node | undefined> {
    const rows = await this.sql<NodeRow[]>`
      select *, last_seen > now() - make_interval(secs => ${this.liveWindowMs / 1000}) as live from nodes where name = ${name}`;
    return rows[0] ? nodeFromRow(rows[0]) : undefined;
  }

  async labels(name: string): Promise<Record<string, string> | undefined> {
    const rows = await this.sql<{ labels: Record<string, string> }[]>`select labels from nodes where name = ${name}`;
    return rows[0]?.labels;
  }
}
