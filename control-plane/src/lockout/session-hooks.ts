// What the lockout guard learns from the agents' Sync streams: the address
// each node connects from (protected at once in this process, and kept
// with the node for the others) and the failsafe entries its agent reports
// in AgentStatus (kept with the node for Explain). Called by
// sync/agent-session.ts.
import type { Logger } from 'pino';
import { formatAddress } from '../../../common/src/cidr.js';
import type { FailsafeEntry } from '../../../proto/gen/fleetwall/v1/failsafe.js';
import { peerAddress } from '../auth/grpc-auth.js';
import type { NodePeerStore } from '../store/node-peers.js';
import type { LockoutGuard } from './lockout-guard.js';

export class LockoutSessionHooks {
  /** node -> the failsafe entries last stored (written only when they change). */
  private readonly lastFailsafe = new Map<string, string>();

  constructor(
    private readonly guard: LockoutGuard,
    private readonly store: NodePeerStore,
    private readonly logger: Logger,
  ) {}

  /** A Sync stream of `node` attached; `peer` is grpc-js's call.getPeer() ("192.0.2.7:40112", "[::1]:5000", a socket path). */
  async connected(node: string, peer: string): Promise<void> {
    const p = this.guard.notePeer(node, peerAddress(peer));
    if (!p) return; // a Unix socket: no address a rule could cover
    try {
      await this.store.recordPeer(node, formatAddress(p));
    } catch (err) {
      this.logger.warn({ err, node }, 'lockout guard: recording the node address failed (protected in this process only)');
    }
  }

  /** AgentStatus.failsafe of `node`. */
  failsafe(node: string, entries: readonly FailsafeEntry[]): void {
    const key = JSON.stringify(entries);
    if (this.lastFailsafe.get(node) === key) return;
    this.lastFailsafe.set(node, key);
    if (this.lastFailsafe.size > 100_000) this.lastFailsafe.clear();
    this.store.recordFailsafe(node, entries).catch((err) => {
      this.lastFailsafe.delete(node);
      this.logger.warn({ err, node }, 'recording the failsafe entries failed');
    });
  }
}
