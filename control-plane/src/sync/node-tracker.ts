// Node state for the nodes connected to this process: written to Postgres on
// connect and disconnect, and in batches (one statement per flush interval)
// for ACKs, NACKs, status reports and last-seen times, so 1,000 agents ACKing
// every revision cost one UPDATE per interval rather than 1,000 per revision.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import type { AgentStatus, Hello } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { InterfaceStatus, SyncState } from '../../../proto/gen/fleetwall/v1/node.js';
import { Status } from '../../../proto/gen/google/rpc/status.js';

interface NodeState {
  readonly name: string;
  readonly sessionId: number;
  /** Epoch ms of the last message. */
  lastSeen: number;
  appliedRevision: bigint;
  syncState: SyncState;
  nackedRevision: bigint;
  lastNack: Status | undefined;
  interfaces: InterfaceStatus[];
  rulesInKernel: bigint;
  mapFillRatio: number;
  kernelMemoryBytes: bigint;
  lastError: string;
  dirty: boolean;
}

export class NodeTracker {
  private readonly nodes = new Map<string, NodeState>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly sql: Sql,
    private readonly controlPlaneId: string,
    private readonly flushIntervalMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.flush().catch((err) => this.logger.warn({ err }, 'node state flush failed'));
    }, this.flushIntervalMs);
    this.timer.unref();
  }

  get connectedCount(): number {
    return this.nodes.size;
  }

  /** Records a new stream for `hello.nodeName` (this process now serves it), with the labels it was admitted with. */
  async connect(hello: Hello, sessionId: number, appliedRevision: bigint, labels: Hello['labels'] = hello.labels): Promise<void> {
    const now = new Date();
    const state: NodeState = {
      name: hello.nodeName,
      sessionId,
      lastSeen: now.getTime(),
      appliedRevision,
      syncState: SyncState.SYNC_STATE_SYNCING,
      nackedRevision: 0n,
      lastNack: undefined,
      interfaces: hello.interfaces,
      rulesInKernel: 0n,
      mapFillRatio: 0,
      kernelMemoryBytes: 0n,
      lastError: '',
      dirty: false,
    };
    this.nodes.set(hello.nodeName, state);
    const ifaces = this.sql.json(hello.interfaces.map((i) => InterfaceStatus.toJSON(i)) as never);
    const rows = await this.sql<{ nacked_revision: bigint; last_nack: Buffer | null }[]>`
      insert into nodes (name, labels, agent_version, agent_instance_id, interfaces, connected, control_plane_id,
                         first_seen, last_seen, applied_revision, sync_state)
      values (${hello.nodeName}, ${this.sql.json(labels)}, ${hello.agentVersion}, ${hello.agentInstanceId},
              ${ifaces}, true, ${this.controlPlaneId}, now(), now(), ${appliedRevision.toString()}::bigint, ${SyncState.SYNC_STATE_SYNCING})
      on conflict (name) do update set
        labels = excluded.labels, agent_version = excluded.agent_version, agent_instance_id = excluded.agent_instance_id,
        interfaces = excluded.interfaces, connected = true, control_plane_id = excluded.control_plane_id,
        last_seen = now(), applied_revision = excluded.applied_revision, sync_state = excluded.sync_state
      returning nacked_revision, last_nack`;
    const r = rows[0];
    if (r && r.nacked_revision > appliedRevision && r.last_nack) {
      // A NACK stays on record until a later revision is ACKed.
      state.nackedRevision = r.nacked_revision;
      state.lastNack = Status.decode(r.last_nack);
    }
  }

  private get(name: string, sessionId: number): NodeState | undefined {
    const s = this.nodes.get(name);
    return s && s.sessionId === sessionId ? s : undefined;
  }

  touch(name: string, sessionId: number): void {
    const s = this.get(name, sessionId);
    if (s) {
      s.lastSeen = Date.now();
      s.dirty = true;
    }
  }

  /** The agent has `revision` in its kernel. */
  ack(name: string, sessionId: number, revision: bigint, inSyncRevision: bigint): void {
    const s = this.get(name, sessionId);
    if (!s) return;
    if (revision > s.appliedRevision) s.appliedRevision = revision;
    if (s.nackedRevision !== 0n && revision > s.nackedRevision) {
      s.nackedRevision = 0n;
      s.lastNack = undefined;
    }
    if (s.nackedRevision === 0n && s.appliedRevision >= inSyncRevision) s.syncState = SyncState.SYNC_STATE_IN_SYNC;
    s.dirty = true;
  }

  nack(name: string, sessionId: number, revision: bigint, status: Status | undefined): void {
    const s = this.get(name, sessionId);
    if (!s) return;
    s.nackedRevision = revision;
    s.lastNack = status ?? { code: 2, message: 'the agent refused the revision without a reason', details: [] };
    s.syncState = SyncState.SYNC_STATE_DEGRADED;
    s.dirty = true;
  }

  status(name: string, sessionId: number, st: AgentStatus): void {
    const s = this.get(name, sessionId);
    if (!s) return;
    if (st.interfaces.length > 0) s.interfaces = st.interfaces;
    s.rulesInKernel = st.rulesInKernel;
    s.mapFillRatio = st.mapFillRatio;
    s.kernelMemoryBytes = st.kernelMemoryBytes;
    s.lastError = st.lastError;
    s.dirty = true;
  }

  /** The stream ended; other processes may already serve the node. */
  async disconnect(name: string, sessionId: number): Promise<void> {
    const s = this.get(name, sessionId);
    if (!s) return;
    await this.flush();
    this.nodes.delete(name);
    await this.sql`
      update nodes set connected = false, sync_state = ${SyncState.SYNC_STATE_DISCONNECTED}, last_seen = now()
      where name = ${name} and control_plane_id = ${this.controlPlaneId}`;
  }

  /** Writes every changed node in one statement. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.flushNow());
    return this.flushing;
  }

  private async flushNow(): Promise<void> {
    const dirty = [...this.nodes.values()].filter((s) => s.dirty);
    if (dirty.length === 0) return;
    for (const s of dirty) s.dirty = false;
    const rows = dirty.map((s) => ({
      name: s.name,
      last_seen: new Date(s.lastSeen).toISOString(),
      applied_revision: s.appliedRevision.toString(),
      sync_state: s.syncState,
      nacked_revision: s.nackedRevision.toString(),
      last_nack: s.lastNack ? Buffer.from(Status.encode(s.lastNack).finish()).toString('base64') : null,
      interfaces: s.interfaces.map((i) => InterfaceStatus.toJSON(i)),
      rules_in_kernel: s.rulesInKernel.toString(),
      map_fill_ratio: s.mapFillRatio,
      kernel_memory_bytes: s.kernelMemoryBytes.toString(),
      last_error: s.lastError,
    }));
    try {
      await this.sql`
        update nodes n set last_seen = x.last_seen, applied_revision = x.applied_revision, sync_state = x.sync_state,
          nacked_revision = x.nacked_revision, last_nack = decode(x.last_nack, 'base64'), interfaces = x.interfaces,
          rules_in_kernel = x.rules_in_kernel, map_fill_ratio = x.map_fill_ratio, kernel_memory_bytes = x.kernel_memory_bytes,
          last_error = x.last_error
        from jsonb_to_recordset(${this.sql.json(rows as never)}) as x(name text, last_seen timestamptz, applied_revision bigint,
          sync_state smallint, nacked_revision bigint, last_nack text, interfaces jsonb, rules_in_kernel bigint,
          map_fill_ratio double precision, kernel_memory_bytes bigint, last_error text)
        where n.name = x.name and n.control_plane_id = ${this.controlPlaneId}`;
    } catch (e) {
      for (const s of dirty) s.dirty = true;
      throw e;
    }
  }

  /** Marks every node of this process disconnected (shutdown). */
  async disconnectAll(): Promise<void> {
    await this.flush().catch(() => undefined);
    const names = [...this.nodes.keys()];
    this.nodes.clear();
    if (names.length === 0) return;
    await this.sql`
      update nodes set connected = false, sync_state = ${SyncState.SYNC_STATE_DISCONNECTED}
      where name = any(${names}) and control_plane_id = ${this.controlPlaneId}`;
  }

  /** Nodes with a live Sync stream to this process and the revision each has ACKed (for /metrics). */
  connected(): { name: string; appliedRevision: bigint }[] {
    return [...this.nodes.values()].map((s) => ({ name: s.name, appliedRevision: s.appliedRevision }));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
