// What the lockout guard keeps with each node (migration 5): the address its
// Sync stream comes from (protected in every control-plane process: a deny
// covering it would cut the agent off) and the failsafe entries its agent
// reports in AgentStatus (Explain names them when they decide).
import type { Sql } from 'postgres';
import type { FailsafeEntry } from '../../../proto/gen/fleetwall/v1/failsafe.js';

export interface NodePeer {
  readonly name: string;
  /** Canonical IP address text. */
  readonly address: string;
}

/** Most failsafe entries kept per node (an agent has a handful). */
export const MAX_FAILSAFE_ENTRIES = 256;

export class NodePeerStore {
  constructor(private readonly sql: Sql) {}

  /** The node (already recorded by its Hello) connects from `address`. */
  async recordPeer(name: string, address: string): Promise<void> {
    await this.sql`update nodes set peer_address = ${address} where name = ${name} and peer_address <> ${address}`;
  }

  /** Every node's last connect address. */
  async peers(): Promise<NodePeer[]> {
    return this.sql<NodePeer[]>`select name, peer_address as address from nodes where peer_address <> '' order by name`;
  }

  async recordFailsafe(name: string, entries: readonly FailsafeEntry[]): Promise<void> {
    const rows = entries.slice(0, MAX_FAILSAFE_ENTRIES).map((e) => ({ cidr: e.cidr.slice(0, 64), source: e.source.slice(0, 200) }));
    await this.sql`update nodes set failsafe = ${this.sql.json(rows as never)} where name = ${name}`;
  }

  /** The failsafe entries node `name` reported last ([] when none or no such node). */
  async failsafe(name: string): Promise<FailsafeEntry[]> {
    const rows = await this.sql<{ failsafe: { cidr: string; source: string }[] }[]>`select failsafe from nodes where name = ${name}`;
    return (rows[0]?.failsafe ?? []).map((e) => ({ cidr: String(e.cidr), source: String(e.source) }));
  }
}
