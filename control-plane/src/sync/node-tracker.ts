// Node state for the nodes connected to this process: the row is written on
// connect, then in batches (one statement per flush interval) for ACKs,
// NACKs, status reports, last-seen times and the disconnect, so 1,000 agents
// ACKing every revision cost one UPDATE per interval rather than 1,000 per
// revision. The batches go through a FlushLoop: a failing flush (the
// database is away) is retried with backoff while the state stays in memory
// and nothing waits for it; a node whose row the database refuses for good is
// set aside (logged once) instead of failing every later flush.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import type { AgentStatus, Hello } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { InterfaceStatus, type MapResizeFailures, SyncState } from '../../../proto/gen/fleetwall/v1/node.js';
import { Status } from '../../../proto/gen/google/rpc/status.js';
import { FlushLoop, type WriterHealth, writeRows } from '../store/flush-loop.js';

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
  resizeFailures: MapResizeFailures | undefined;
  lastError: string;
  dirty: boolean;
  /** The stream ended: the next flush writes connected = false, then the state is dropped. */
  closed: boolean;
  /** The database refused this node's row: no more writes for this stream. */
  setAside: boolean;
}

interface NodeRow {
  name: string;
  last_seen: string;
  applied_revision: string;
  sync_state: number;
  nacked_revision: string;
  last_nack: string | null;
  interfaces: unknown[];
  rules_in_kernel: string;
  map_fill_ratio: number;
  kernel_memory_bytes: string;
  resize_grow_failures: string;
  resize_shrink_failures: string;
  last_resize_failure: string;
  last_resize_failure_time: string | null;
  last_error: string;
  connected: boolean;
}

/** How long a read waits for this process's pending node state to be written before reading what is stored. */
const READ_FLUSH_WAIT_MS = 2000;

export class NodeTracker {
  private readonly nodes = new Map<string, NodeState>();
  private readonly loop: FlushLoop;

  constructor(
    private readonly sql: Sql,
    private readonly controlPlaneId: string,
    flushIntervalMs: number,
    private readonly logger: Logger,
  ) {
    this.loop = new FlushLoop(() => this.flushNow(), { name: 'nodes', intervalMs: flushIntervalMs, logger });
  }

  start(): void {
    this.loop.start();
  }

  stop(): void {
    this.loop.stop();
  }

  get health(): WriterHealth {
    return this.loop.health;
  }

  /** The database is back: retry a failing flush now (FlushLoop.retrySoon). */
  retrySoon(): void {
    this.loop.retrySoon();
  }

  get connectedCount(): number {
    let n = 0;
    for (const s of this.nodes.values()) if (!s.closed) n++;
    return n;
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
      resizeFailures: undefined,
      lastError: '',
      dirty: false,
      closed: false,
      setAside: false,
    };
    this.nodes.set(hello.nodeName, state);
    const ifaces = this.sql.json(hello.interfaces.map((i) => InterfaceStatus.toJSON(i)) as never);
    const rows = await this.sql<{ nacked_revision: bigint; last_nack: Buffer | null }[]>`
      insert into nodes (name, labels, agent_version, agent_instance_id, interfaces, connected, control_plane_id,
                         first_seen, last_seen, applied_revision, sync_state, capacity_per_table)
      values (${hello.nodeName}, ${this.sql.json(labels)}, ${hello.agentVersion}, ${hello.agentInstanceId},
              ${ifaces}, true, ${this.controlPlaneId}, now(), now(), ${appliedRevision.toString()}::bigint, ${SyncState.SYNC_STATE_SYNCING},
              ${hello.capacityPerTable.toString()}::bigint)
      on conflict (name) do update set
        labels = excluded.labels, agent_version = excluded.agent_version, agent_instance_id = excluded.agent_instance_id,
        interfaces = excluded.interfaces, connected = true, control_plane_id = excluded.control_plane_id,
        last_seen = now(), applied_revision = excluded.applied_revision, sync_state = excluded.sync_state,
        capacity_per_table = excluded.capacity_per_table
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
    return s && s.sessionId === sessionId && !s.closed ? s : undefined;
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
    s.resizeFailures = st.mapResizeFailures;
    s.lastError = st.lastError;
    s.dirty = true;
  }

  /** The stream ended (other processes may already serve the node): written by the next flush, which starts now. */
  disconnect(name: string, sessionId: number): void {
    const s = this.get(name, sessionId);
    if (!s) return;
    s.closed = true;
    s.lastSeen = Date.now();
    s.dirty = true;
    this.loop.kick();
  }

  /** Writes every changed node now (joining a flush in progress); rejects if the write fails. */
  flush(): Promise<void> {
    return this.loop.flush();
  }

  /** Before a read: gives pending state a bounded chance to be written; never fails or waits long. */
  async settleForRead(): Promise<void> {
    if (this.loop.failing) return;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.loop.flush().catch(() => undefined), new Promise<void>((r) => (t = setTimeout(r, READ_FLUSH_WAIT_MS)))]);
    clearTimeout(t);
  }

  private row(s: NodeState): NodeRow {
    return {
      name: s.name,
      last_seen: new Date(s.lastSeen).toISOString(),
      applied_revision: s.appliedRevision.toString(),
      sync_state: s.closed ? SyncState.SYNC_STATE_DISCONNECTED : s.syncState,
      nacked_revision: s.nackedRevision.toString(),
      last_nack: s.lastNack ? Buffer.from(Status.encode(s.lastNack).finish()).toString('base64') : null,
      interfaces: s.interfaces.map((i) => InterfaceStatus.toJSON(i)),
      rules_in_kernel: s.rulesInKernel.toString(),
      map_fill_ratio: s.mapFillRatio,
      kernel_memory_bytes: s.kernelMemoryBytes.toString(),
      resize_grow_failures: (s.resizeFailures?.grow ?? 0n).toString(),
      resize_shrink_failures: (s.resizeFailures?.shrink ?? 0n).toString(),
      last_resize_failure: s.resizeFailures?.lastReason ?? '',
      last_resize_failure_time: s.resizeFailures?.lastTime?.toISOString() ?? null,
      last_error: s.lastError,
      connected: !s.closed,
    };
  }

  private async flushNow(): Promise<void> {
    const dirty = [...this.nodes.values()].filter((s) => s.dirty && !s.setAside);
    if (dirty.length === 0) return;
    for (const s of dirty) s.dirty = false;
    const rows = dirty.map((s) => this.row(s));
    let refused: NodeRow[];
    try {
      refused = await writeRows(rows, (batch) => this.write(batch));
    } catch (e) {
      for (const s of dirty) s.dirty = true;
      throw e;
    }
    for (const r of refused) {
      const s = dirty.find((x) => x.name === r.name)!;
      s.setAside = true;
      this.loop.setAside(1);
      this.logger.error({ node: s.name }, 'the database refuses this node state; it is set aside until the node reconnects');
    }
    for (const s of dirty) if (s.closed && this.nodes.get(s.name) === s) this.nodes.delete(s.name);
  }

  private async write(rows: readonly NodeRow[]): Promise<void> {
    await this.sql`
      update nodes n set last_seen = x.last_seen, applied_revision = x.applied_revision, sync_state = x.sync_state,
        nacked_revision = x.nacked_revision, last_nack = decode(x.last_nack, 'base64'), interfaces = x.interfaces,
        rules_in_kernel = x.rules_in_kernel, map_fill_ratio = x.map_fill_ratio, kernel_memory_bytes = x.kernel_memory_bytes,
        resize_grow_failures = x.resize_grow_failures, resize_shrink_failures = x.resize_shrink_failures,
        last_resize_failure = x.last_resize_failure, last_resize_failure_time = x.last_resize_failure_time,
        last_error = x.last_error, connected = x.connected
      from jsonb_to_recordset(${this.sql.json(rows as never)}) as x(name text, last_seen timestamptz, applied_revision bigint,
        sync_state smallint, nacked_revision bigint, last_nack text, interfaces jsonb, rules_in_kernel bigint,
        map_fill_ratio double precision, kernel_memory_bytes bigint, resize_grow_failures bigint, resize_shrink_failures bigint,
        last_resize_failure text, last_resize_failure_time timestamptz, last_error text, connected boolean)
      where n.name = x.name and n.control_plane_id = ${this.controlPlaneId}`;
  }

  /** Marks every node of this process disconnected (shutdown). */
  async disconnectAll(): Promise<void> {
    for (const s of this.nodes.values()) {
      if (s.closed) continue;
      s.closed = true;
      s.dirty = true;
    }
    await this.flush();
    this.nodes.clear();
  }

  /** Nodes with a live Sync stream to this process and the revision each has ACKed (for /metrics). */
  connected(): { name: string; appliedRevision: bigint }[] {
    const out: { name: string; appliedRevision: bigint }[] = [];
    for (const s of this.nodes.values()) if (!s.closed) out.push({ name: s.name, appliedRevision: s.appliedRevision });
    return out;
  }
}
