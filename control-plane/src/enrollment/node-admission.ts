// Who a Sync stream may speak for, and what it receives: the one call the
// Sync session makes with its Hello (sync/agent-session.ts attach), before
// anything is recorded.
//
// With TLS on, the stream's node certificate (auth/sync-identity.ts) must
// name the Hello's node (NODE_MISMATCH), be one this control plane issued
// and not revoked (NODE_REVOKED); the node receives the rules of the labels
// bound at enrollment (the Hello's labels are ignored: an agent cannot
// relabel itself into another policy group), and a snapshot when an admin
// changed them since its kernel state was built. The admitted stream is
// tracked: a revocation or relabel (NOTIFY fleetwall_node_identity, from
// any process) closes it at once, a poll every few seconds catches a missed
// notification, and it is closed when its certificate expires (the agent
// reconnects with the renewed one).
//
// On a loopback-trust or --insecure-no-auth control plane: as before issue
// 15, the Hello's labels, nothing tracked.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import type { Hello } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { NodeIdentity, Principal } from '../auth/principal.js';
import type { SecurityMode } from '../auth/security-mode.js';
import { checkHelloNode } from '../auth/sync-identity.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { Labels } from '../rules/selector.js';
import { NODE_IDENTITY_CHANNEL, type NodeIdentityNotice, type NodeIdentityStore } from '../store/node-identity-store.js';

/** What the session needs of itself here. */
export interface AdmittedStream {
  fail(err: unknown): void;
}

export interface Admission {
  /** The labels the node's rules are chosen by. */
  readonly labels: Labels;
  /** Send a snapshot, whatever the Hello's resume revision (the labels changed since its state was built). */
  readonly forceSnapshot: boolean;
  /** The agent ACKed the snapshot taken with these labels. */
  snapshotApplied(): void;
  /** The stream ended. */
  release(): void;
}

const NOTHING = (): void => undefined;
/** setTimeout's limit; a certificate valid longer is checked again then. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class NodeAdmission {
  private readonly live = new Map<AdmittedStream, NodeIdentity>();
  private unlisten: (() => Promise<void>) | undefined;
  private poller: NodeJS.Timeout | undefined;

  constructor(
    readonly mode: SecurityMode,
    private readonly store: NodeIdentityStore,
    private readonly logger: Logger,
    private readonly pollMs = 5000,
  ) {}

  /** Follows revocations and relabels from every process (TLS only). */
  async start(sql: Sql): Promise<void> {
    if (this.mode !== 'tls') return;
    const meta = await sql.listen(
      NODE_IDENTITY_CHANNEL,
      (payload) => this.onNotice(payload),
      // (Re)subscribed, maybe after a lost connection: a revocation may have been missed.
      () => void this.recheck(),
    );
    this.unlisten = meta.unlisten;
    this.poller = setInterval(() => void this.recheck(), this.pollMs);
    this.poller.unref();
  }

  async stop(): Promise<void> {
    if (this.poller) clearInterval(this.poller);
    await this.unlisten?.().catch(() => undefined);
  }

  get tracked(): number {
    return this.live.size;
  }

  private onNotice(payload: string): void {
    let n: NodeIdentityNotice;
    try {
      n = JSON.parse(payload) as NodeIdentityNotice;
    } catch {
      return;
    }
    for (const [stream, node] of [...this.live]) {
      if (node.name !== n.node) continue;
      this.logger.info(
        { node: n.node, op: n.op },
        n.op === 'revoke' ? 'node revoked: closing its stream' : 'node relabeled: closing its stream',
      );
      stream.fail(
        n.op === 'revoke'
          ? new FleetwallError('NODE_REVOKED', `node ${n.node}'s certificate was revoked by an admin`, { node: n.node })
          : new FleetwallError('NODE_RELABELED', `an admin changed node ${n.node}'s labels: reconnect for its new rule set`, {
              node: n.node,
            }),
      );
    }
  }

  /** Closes tracked streams whose certificate was revoked meanwhile. */
  async recheck(): Promise<void> {
    if (this.live.size === 0) return;
    try {
      const revoked = await this.store.revokedAmong([...new Set([...this.live.values()].map((n) => n.serial))]);
      for (const [stream, node] of [...this.live])
        if (revoked.has(node.serial))
          stream.fail(new FleetwallError('NODE_REVOKED', `node ${node.name}'s certificate was revoked by an admin`, { node: node.name }));
    } catch (err) {
      this.logger.warn({ err }, 'checking node certificates for revocation failed');
    }
  }

  /** Admits a Sync stream with its Hello, or throws the refusal (nothing recorded). */
  async admit(stream: AdmittedStream, principal: Principal | undefined, hello: Hello): Promise<Admission> {
    checkHelloNode(principal, hello);
    const node = principal?.node;
    if (this.mode !== 'tls') return { labels: { ...hello.labels }, forceSnapshot: false, snapshotApplied: NOTHING, release: NOTHING };
    if (!node) throw new FleetwallError('NODE_CERT_REQUIRED', 'AgentService/Sync needs a node client certificate');
    const st = await this.store.standing(node.serial);
    if (!st || st.node_name !== node.name || !st.identity)
      throw new FleetwallError(
        'NODE_CERT_REQUIRED',
        `certificate ${node.serial} of node ${node.name} was not issued by this control plane (or its record is gone): enroll again with a join token`,
      );
    if (st.revoked)
      throw new FleetwallError('NODE_REVOKED', `node ${node.name}'s certificate was revoked: it needs a new join token to come back`, {
        node: node.name,
      });
    if (node.notAfterMs <= Date.now())
      throw new FleetwallError(
        'NODE_CERT_EXPIRED',
        `node ${node.name}'s certificate expired at ${new Date(node.notAfterMs).toISOString()}`,
        {
          node: node.name,
        },
      );
    const identity = st.identity;
    if (Object.keys(hello.labels).length > 0 && JSON.stringify(sorted(hello.labels)) !== JSON.stringify(sorted(identity.labels)))
      this.logger.debug(
        { node: node.name, hello: hello.labels, bound: identity.labels },
        "Hello labels ignored: the node's labels are bound at enrollment (fleetwall nodes label)",
      );
    this.live.set(stream, node);
    let expiry: NodeJS.Timeout | undefined;
    const arm = (): void => {
      const left = node.notAfterMs - Date.now();
      if (left > 0) {
        expiry = setTimeout(arm, Math.min(MAX_TIMER_MS, left));
        expiry.unref();
        return;
      }
      stream.fail(
        new FleetwallError('NODE_CERT_EXPIRED', `node ${node.name}'s certificate expired at ${new Date(node.notAfterMs).toISOString()}`, {
          node: node.name,
        }),
      );
    };
    arm();
    let applied = !identity.needs_snapshot;
    return {
      labels: identity.labels,
      forceSnapshot: identity.needs_snapshot,
      snapshotApplied: () => {
        if (applied) return;
        applied = true;
        this.store
          .snapshotApplied(node.name, identity.labels_epoch)
          .catch((err) => this.logger.warn({ err, node: node.name }, 'recording the applied snapshot failed'));
      },
      release: () => {
        if (expiry) clearTimeout(expiry);
        this.live.delete(stream);
      },
    };
  }
}

function sorted(l: Readonly<Record<string, string>>): [string, string][] {
  return Object.entries(l).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
