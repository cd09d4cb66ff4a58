// One agent's Sync stream (sequence diagram: proto/fleetwall/v1/agent_service.proto).
//
// Hello -> SyncStart -> snapshot chunks or per-revision catch-up deltas ->
// InSync -> live deltas. Everything up to InSync is decided after the async
// look-ups, in one synchronous block that also registers the session with
// the hub, so no revision is sent twice or skipped.
//
// Every message from the agent is checked first (edge/sync-input.ts). What
// goes out waits in the stream's outbox (session-outbox.ts); snapshot or
// resume is chosen in sync-start.ts. An agent is dropped (RESOURCE_EXHAUSTED
// AGENT_TOO_SLOW, it resumes on reconnect) when more than
// FLEETWALL_MAX_AGENT_QUEUE_BYTES wait for it or its oldest waiting message
// is older than FLEETWALL_MAX_AGENT_LAG.
import type { Logger } from 'pino';
import { type Hello, SyncMode, type SyncRequest, type SyncResponse } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { principalOfMetadata } from '../auth/grpc-auth.js';
import type { Admission, NodeAdmission } from '../enrollment/node-admission.js';
import type { CounterScope } from './counter-scope.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { isRefused, type RefusedMessage, refusal } from '../errors/refused-message.js';
import { toGrpcStatus } from '../errors/to-grpc-status.js';
import { checkSyncRequest } from '../edge/sync-input.js';
import { NODE_LABEL } from '../../../common/src/labels.js';
import type { CounterAggregator } from '../counters/counter-aggregator.js';
import type { InspectHub } from '../inspect/inspect-hub.js';
import type { Labels } from '../rules/selector.js';
import type { ChangeLog } from '../store/change-log.js';
import type { NodeTracker } from './node-tracker.js';
import type { RevisionFeed } from './revision-feed.js';
import type { RuleCache } from './rule-cache.js';
import type { HubSession, SyncHub } from './sync-hub.js';
import { type SyncCall, SessionOutbox } from './session-outbox.js';
import { chooseStart, writeCatchUp } from './sync-start.js';
import { encodeInSync } from './wire-encoding.js';
import type { SyncMetrics } from '../counters/metrics.js';
import type { LockoutSessionHooks } from '../lockout/session-hooks.js';
import type { RespondSessionHooks } from '../respond/respond-setup.js';
import type { AgentPolicy } from '../../../proto/gen/fleetwall/v1/agent_service.js';

export interface SessionDeps {
  readonly hub: SyncHub;
  readonly cache: RuleCache;
  readonly feed: RevisionFeed;
  readonly changeLog: ChangeLog;
  readonly nodes: NodeTracker;
  readonly counters: CounterAggregator;
  /** Where the agents' drop events go (absent: they are ignored). */
  readonly inspect?: InspectHub;
  readonly registry: SessionRegistry;
  readonly metrics: SyncMetrics;
  /** Node identity: who the stream may speak for, its bound labels (enrollment/node-admission.ts). */
  readonly admission: Pick<NodeAdmission, 'admit'>;
  /** Counters only for rules the node was sent (counter-scope.ts). */
  readonly counterScope: Pick<CounterScope, 'filter'>;
  readonly storeId: string;
  readonly controlPlaneId: string;
  readonly pingIntervalMs: number;
  readonly helloTimeoutMs: number;
  readonly resumeMaxRevisions: number;
  readonly resumeMaxChanges: number;
  readonly chunkBytes: number;
  readonly maxQueueBytes: number;
  readonly maxLagMs: number;
  readonly logger: Logger;
  /** The lockout guard's view of the streams: connect addresses, failsafe entries. */
  readonly lockout?: LockoutSessionHooks;
  /** Detection policies (issue 18): PolicySets out, Detections in. */
  readonly respond?: RespondSessionHooks;
}

/** The sessions of this process by node name (a newer stream replaces an older one). */
export class SessionRegistry {
  readonly byNode = new Map<string, AgentSession>();
  readonly all = new Set<AgentSession>();
}

let nextSessionId = 1;

export class AgentSession implements HubSession {
  readonly id = nextSessionId++;
  nodeName = '';
  labels: Labels = {};
  groupKey = '';
  private state: 'hello' | 'attaching' | 'live' | 'closed' = 'hello';
  private chain: Promise<void> = Promise.resolve();
  /** Messages waiting in `chain` (Hello and what arrived while it was handled). */
  private queued = 0;
  private lastReceived = Date.now();
  private helloTimer: NodeJS.Timeout | undefined;
  private sentRevision = 0n;
  private inSyncRevision = 0n;
  private pingNonce = 0n;
  private readonly log: Logger;
  /** Commit times of revisions sent and not yet ACKed (for the implementation-delay metric). */
  private readonly pendingCommit = new Map<bigint, number>();
  /** This stream's node identity, once admitted. */
  private admission: Admission | undefined;

  private readonly outbox: SessionOutbox;
  /** The last NACK logged (code and message), so a repeated NACK is not logged again. */
  private lastNackLogged = '';

  constructor(
    private readonly call: SyncCall,
    private readonly deps: SessionDeps,
  ) {
    this.outbox = new SessionOutbox(call);
    this.log = deps.logger.child({ session: this.id });
    deps.registry.all.add(this);
    call.on('data', (raw: SyncRequest | RefusedMessage) => {
      this.lastReceived = Date.now();
      if (isRefused(raw)) {
        this.fail(refusal(raw));
        return;
      }
      if (this.state === 'closed') return;
      let msg: SyncRequest;
      try {
        msg = checkSyncRequest(raw);
      } catch (err) {
        this.fail(err);
        return;
      }
      if (this.state === 'live' && this.queued === 0) {
        // The hot path (ACKs, pongs, counter reports): no promise per message.
        try {
          this.handleLive(msg);
        } catch (err) {
          this.fail(err);
        }
        return;
      }
      this.queued++;
      this.chain = this.chain
        .then(() => this.handle(msg))
        .catch((err) => this.fail(err))
        .finally(() => this.queued--);
    });
    call.on('end', () => this.close());
    call.on('cancelled', () => this.close(undefined, true));
    call.on('error', () => this.close(undefined, true));
    this.helloTimer = setTimeout(() => {
      if (this.state === 'hello')
        this.fail(new FleetwallError('HELLO_REQUIRED', `no Hello within ${deps.helloTimeoutMs}ms of opening the Sync stream`));
    }, deps.helloTimeoutMs);
    this.helloTimer.unref();
  }

  get live(): boolean {
    return this.state === 'live';
  }

  private write(msg: SyncResponse | Buffer): void {
    if (this.state === 'closed') return;
    const waiting = this.outbox.push(msg);
    if (waiting > this.deps.maxQueueBytes) {
      this.fail(
        new FleetwallError(
          'AGENT_TOO_SLOW',
          `${waiting} bytes are waiting for this agent, more than ${this.deps.maxQueueBytes} (FLEETWALL_MAX_AGENT_QUEUE_BYTES); reconnect to resume`,
        ),
      );
    }
  }

  /** Ends the stream with a catalogued status. */
  fail(err: unknown): void {
    if (this.state === 'closed') return;
    const st = toGrpcStatus(err, this.log, 'AgentService/Sync');
    const reason = err instanceof FleetwallError ? err.reason : 'INTERNAL';
    const quiet = reason === 'SHUTTING_DOWN' || reason === 'STREAM_REPLACED' || reason === 'RESYNC_REQUIRED';
    this.log[quiet ? 'debug' : 'warn']({ node: this.nodeName, reason, message: st.details }, 'closing Sync stream');
    this.close({ code: st.code!, details: st.details!, metadata: st.metadata! });
  }

  private close(status?: { code: number; details: string; metadata: import('@grpc/grpc-js').Metadata }, peerGone = false): void {
    if (this.state === 'closed') return;
    const wasRegistered = this.state === 'live' || this.state === 'attaching';
    this.state = 'closed';
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.admission?.release();
    this.deps.hub.unregister(this);
    this.deps.registry.all.delete(this);
    if (this.deps.registry.byNode.get(this.nodeName) === this) this.deps.registry.byNode.delete(this.nodeName);
    this.outbox.close();
    if (!peerGone) {
      try {
        if (status) this.call.emit('error', status);
        else this.call.end();
      } catch {
        // The stream is already gone.
      }
    }
    if (wasRegistered && this.nodeName) {
      const name = this.nodeName;
      void this.chain
        .then(() => {
          this.deps.nodes.disconnect(name, this.id);
          this.deps.counters.detach(name, this.id);
        })
        .catch((err) => this.log.warn({ err, node: name }, 'recording the disconnect failed'));
    }
  }

  private async handle(msg: SyncRequest): Promise<void> {
    if (this.state === 'closed') return;
    const m = msg.msg;
    if (this.state === 'hello') {
      if (m?.$case !== 'hello') {
        throw new FleetwallError(
          'HELLO_REQUIRED',
          `the first message on a Sync stream must be Hello, got ${m?.$case ?? 'an empty message'}`,
        );
      }
      await this.attach(m.value);
      return;
    }
    this.handleLive(msg);
  }

  private handleLive(msg: SyncRequest): void {
    if (this.state === 'closed') return;
    const m = msg.msg;
    this.deps.nodes.touch(this.nodeName, this.id);
    switch (m?.$case) {
      case 'hello':
        throw new FleetwallError('PROTOCOL_VIOLATION', 'Hello was sent twice on one Sync stream; open a new stream to start over');
      case 'ack': {
        const rev = m.value.revision;
        this.deps.nodes.ack(this.nodeName, this.id, rev, this.inSyncRevision);
        if (rev >= this.inSyncRevision) this.admission?.snapshotApplied();
        const t = this.pendingCommit.get(rev);
        if (t !== undefined) this.deps.metrics.observeApplied(Date.now() - t);
        for (const k of this.pendingCommit.keys()) if (k <= rev) this.pendingCommit.delete(k);
        return;
      }
      case 'nack': {
        // Logged at warn once per distinct reason; a NACK of every revision for the same reason is debug.
        const why = `${m.value.status?.code ?? ''}:${m.value.status?.message ?? ''}`;
        this.log[why === this.lastNackLogged ? 'debug' : 'warn'](
          { node: this.nodeName, revision: m.value.revision.toString(), status: m.value.status?.message },
          'agent NACKed a revision',
        );
        this.lastNackLogged = why;
        this.deps.nodes.nack(this.nodeName, this.id, m.value.revision, m.value.status);
        return;
      }
      case 'ping':
        this.write({ msg: { $case: 'pong', value: { nonce: m.value.nonce } } });
        return;
      case 'pong':
        return;
      case 'counterReport':
        this.deps.counters.apply(this.nodeName, this.id, this.deps.counterScope.filter(this, m.value));
        this.write({ msg: { $case: 'counterAck', value: { seq: m.value.seq } } });
        return;
      case 'status':
        this.deps.nodes.status(this.nodeName, this.id, m.value);
        this.deps.lockout?.failsafe(this.nodeName, m.value.failsafe);
        return;
      case 'events':
        this.deps.inspect?.ingest(this.nodeName, m.value);
        return;
      case 'detection':
        this.deps.respond?.detection(this.nodeName, m.value);
        return;
      default:
        throw new FleetwallError(
          'PROTOCOL_VIOLATION',
          'empty SyncRequest: set one of hello, ack, nack, ping, pong, counter_report, status, events, detection',
        );
    }
  }

  private async attach(hello: Hello): Promise<void> {
    const d = this.deps;
    // The name, labels and every other field were checked with the message (checkSyncRequest).
    // Node identity (issue 15): may this stream speak for hello.node_name, with which labels? Before anything is recorded.
    const admission = await d.admission.admit(this, principalOfMetadata(this.call.metadata), hello);
    if (this.state !== 'hello') {
      admission.release();
      return;
    }
    this.admission = admission;
    this.state = 'attaching';
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.nodeName = hello.nodeName;
    // What rules and detection policies select the node by: its labels (bound at enrollment with TLS)
    // and its own name label (NODE_LABEL; with TLS the name is the certificate's), which a node-scoped
    // ban selects; the node's recorded labels stay the bound ones.
    this.labels = { ...admission.labels, [NODE_LABEL]: hello.nodeName };
    const older = d.registry.byNode.get(this.nodeName);
    d.registry.byNode.set(this.nodeName, this);
    if (older && older !== this)
      older.fail(new FleetwallError('STREAM_REPLACED', `node ${this.nodeName} opened a newer Sync stream; this one is closed`));

    const sameStore = hello.storeId === d.storeId;
    const resumeFrom = sameStore ? hello.resumeRevision : 0n;
    await d.nodes.connect(hello, this.id, resumeFrom, admission.labels);
    await d.lockout?.connected(this.nodeName, this.call.getPeer());
    await d.counters.attach(this.nodeName, this.id);
    await d.feed.catchUp();
    if (this.state !== 'attaching') return;

    const { mode, why, changed } = await chooseStart(d, hello, admission.forceSnapshot, () => this.state === 'attaching');
    if (this.state !== 'attaching') return;

    // Synchronous from here: the cache cannot change under us.
    const rev = d.cache.revision;
    this.write({
      msg: {
        $case: 'start',
        value: {
          mode,
          revision: rev,
          storeId: d.storeId,
          controlPlaneId: d.controlPlaneId,
          pingInterval: { seconds: BigInt(Math.floor(d.pingIntervalMs / 1000)), nanos: (d.pingIntervalMs % 1000) * 1_000_000 },
        },
      },
    });
    let sentRules = 0;
    if (mode === SyncMode.SYNC_MODE_SNAPSHOT) {
      const snap = d.hub.snapshot(this);
      for (const p of snap.parts) this.write(p);
      sentRules = snap.total;
    } else {
      sentRules = writeCatchUp(
        d,
        changed!,
        hello.resumeRevision,
        rev,
        (sel) => d.hub.selects(this, sel),
        (p) => this.write(p),
      );
    }
    this.write(encodeInSync(rev));
    this.sentRevision = rev;
    this.inSyncRevision = rev;
    this.state = 'live';
    d.hub.register(this);
    d.respond?.attached(this);
    d.metrics.sessionStarted(mode);
    this.log.debug(
      {
        node: this.nodeName,
        mode: mode === SyncMode.SYNC_MODE_SNAPSHOT ? 'snapshot' : 'resume',
        revision: rev.toString(),
        resumeRevision: hello.resumeRevision.toString(),
        rules: sentRules,
        why: why || undefined,
      },
      'agent in sync',
    );
  }

  /** The node's detection policies, whole (PolicySet; respond/policy-fanout.ts decides when). */
  sendPolicies(policies: AgentPolicy[]): void {
    if (this.state === 'live') this.write({ msg: { $case: 'policies', value: { policies } } });
  }

  deliver(revision: bigint, parts: readonly Buffer[], commitTimeMs?: number): void {
    if (this.state !== 'live' || revision <= this.sentRevision) return;
    for (const p of parts) this.write(p);
    this.sentRevision = revision;
    if (commitTimeMs !== undefined && this.pendingCommit.size < 1000) this.pendingCommit.set(revision, commitTimeMs);
  }

  /**
   * Pings the agent, or drops it when it fell behind by time or was silent
   * for three intervals. Silence is counted only while nothing waits for the
   * agent, and from when the last backlog reached the socket: an agent still
   * receiving a large snapshot is judged by the lag bound, not by silence.
   */
  tick(now: number): void {
    if (this.state !== 'live') return;
    const oldest = this.outbox.checkBacklog();
    if (oldest !== undefined && now - oldest > this.deps.maxLagMs) {
      this.fail(
        new FleetwallError(
          'AGENT_TOO_SLOW',
          `the oldest message waiting for this agent was queued ${now - oldest}ms ago, more than ${this.deps.maxLagMs}ms (FLEETWALL_MAX_AGENT_LAG); reconnect to resume`,
        ),
      );
      return;
    }
    const heardOrCleared = Math.max(this.lastReceived, this.outbox.backlogClearedAt);
    if (oldest === undefined && !this.outbox.backlogPending && now - heardOrCleared > 3 * this.deps.pingIntervalMs) {
      this.fail(
        new FleetwallError(
          'AGENT_TIMEOUT',
          `node ${this.nodeName} sent nothing for ${now - this.lastReceived}ms (3 ping intervals after the last message waiting for it was sent); reconnect to resume`,
        ),
      );
      return;
    }
    this.pingNonce++;
    this.write({ msg: { $case: 'ping', value: { nonce: this.pingNonce, sendTime: new Date(now) } } });
  }

  /** Ends the stream (shutdown or resync): the agent reconnects and resumes. */
  shutdown(reason: 'SHUTTING_DOWN' | 'RESYNC_REQUIRED'): void {
    this.fail(new FleetwallError(reason));
  }
}
