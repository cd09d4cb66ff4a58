// Capacity at write time: agents report in their Hello how many prefixes each
// of their kernel tables holds (capacity_per_table, stored per node); a
// change that would put more rules in a table of some node than that node
// holds is refused (FAILED_PRECONDITION CAPACITY_EXCEEDED, naming the node,
// the table and the numbers), as a cloud firewall refuses rules past a
// security group's limit, instead of every agent NACKing every later
// revision.
//
// What is counted: per node and table (direction x family, as the agent's
// tables are), the rules whose selector selects the node, in this process's
// rule cache. That is an upper bound of the kernel entries the agent needs
// (rules sharing a prefix take one entry, a deny inside an allow none), so a
// change the agent could just take may be refused, never the other way
// round; concurrent writes are each checked against the cache without the
// others, and nodes' capacities are re-read at most once a second: ahead,
// in the background, by a check past half of that (a create never waits
// for the read while the list it has is good; issue 18: creates while bans
// pour in paid a store round trip each second).
import type { Labels } from '../../../common/src/labels.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { selectorMatches } from '../rules/selector.js';
import type { NodeStore } from '../store/node-store.js';
import { type RuleCache, TABLE_NAMES, type TableIndex } from '../sync/rule-cache.js';

export interface Placement {
  readonly selector: Labels;
  readonly table: TableIndex;
  /** Rules added (negative: taken away, for an update that moves a rule). */
  readonly count: number;
}

interface NodeCapacity {
  readonly name: string;
  readonly labels: Labels;
  readonly capacity: number;
}

const NODES_TTL_MS = 1000;

export class CapacityGuard {
  /** The list in use (read at `at`), and a read ahead of its end. */
  private nodes: { at: number; list: Promise<NodeCapacity[]> } | undefined;
  private next: { at: number; list: Promise<NodeCapacity[]> } | undefined;

  /** now: the clock, ms (tests). */
  constructor(
    private readonly store: Pick<NodeStore, 'capacities'>,
    private readonly cache: RuleCache,
    private readonly now: () => number = Date.now,
  ) {}

  private read(at: number): { at: number; list: Promise<NodeCapacity[]> } {
    const read = { at, list: this.store.capacities() };
    read.list.then(
      () => {
        // Read ahead: it takes over once it is in (a newer list than the one in use).
        if (this.next === read) {
          this.nodes = read;
          this.next = undefined;
        }
      },
      () => {
        if (this.nodes === read) this.nodes = undefined;
        if (this.next === read) this.next = undefined;
      },
    );
    return read;
  }

  private capacities(): Promise<NodeCapacity[]> {
    const now = this.now();
    if (!this.nodes || now - this.nodes.at > NODES_TTL_MS) {
      // Too old (or none): wait for a read (the one ahead, if it is under way).
      this.nodes = this.next ?? this.read(now);
      this.next = undefined;
    } else if (now - this.nodes.at > NODES_TTL_MS / 2 && !this.next) this.next = this.read(now);
    return this.nodes.list;
  }

  /** Rules the cache has today in `table` that select a node with these labels. */
  private current(labels: Labels, table: TableIndex): number {
    let n = 0;
    for (const g of this.cache.groups.values()) if (g.tables[table]! > 0 && selectorMatches(g.selector, labels)) n += g.tables[table]!;
    return n;
  }

  /** Throws CAPACITY_EXCEEDED when the placements would overfill a table of some node; `field` names the request part. */
  async check(placements: readonly Placement[], field: string): Promise<void> {
    if (placements.every((p) => p.count <= 0)) return;
    const nodes = await this.capacities();
    for (const node of nodes) {
      const add = [0, 0, 0, 0];
      for (const p of placements) if (selectorMatches(p.selector, node.labels)) add[p.table]! += p.count;
      for (const t of [0, 1, 2, 3] as TableIndex[]) {
        if (add[t]! <= 0) continue;
        const now = this.current(node.labels, t);
        if (now + add[t]! <= node.capacity) continue;
        throw new FleetwallError(
          'CAPACITY_EXCEEDED',
          `${field}: node ${node.name}'s ${TABLE_NAMES[t]} table holds ${node.capacity} prefixes (its agent's capacity_per_table); ` +
            `${now} rules selecting it are there already and this change adds ${add[t]} (${now + add[t]!} > ${node.capacity}). ` +
            'Nothing was stored: delete rules, narrow the selector, or give the agents larger tables (--capacity-prefixes)',
          { node: node.name, table: TABLE_NAMES[t], needed: String(now + add[t]!), capacity: String(node.capacity), current: String(now) },
        );
      }
    }
  }
}
