// This process's copy of the rule set at one revision, kept for the sync
// fan-out: every rule pre-encoded as AgentRule bytes, grouped by selector so
// a node's snapshot is the union of the groups its labels satisfy. Changed
// only by the revision feed, in revision order, synchronously (no await
// between reading the cache and registering a session for what follows).
//
// It also counts each selector group's rules per kernel table (direction x
// family, as the agents' tables are), for the capacity check at write time
// (services/capacity-guard.ts), and remembers the ids of the last
// RECENT_DELETES deleted rules, whose final counter reports are still taken.
import { type Labels, parseSelectorKey } from '../rules/selector.js';
import type { RuleChange, SyncRuleRow } from '../store/change-log.js';
import { encodeAgentRule } from './wire-encoding.js';

/** Kernel table of a rule: 0 ingress IPv4, 1 ingress IPv6, 2 egress IPv4, 3 egress IPv6 (the agent's numbering). */
export type TableIndex = 0 | 1 | 2 | 3;
export const TABLE_NAMES = ['ingress IPv4', 'ingress IPv6', 'egress IPv4', 'egress IPv6'] as const;

export function tableIndex(direction: number, cidr: string): TableIndex {
  return ((direction === 2 ? 2 : 0) + (cidr.includes(':') ? 1 : 0)) as TableIndex;
}

const RECENT_DELETES = 100_000;

export interface CachedRule {
  readonly id: bigint;
  readonly table: TableIndex;
  /** Selector key (interned: the group's own string). */
  readonly sel: string;
  /** AgentRule bytes, latin1. */
  readonly enc: string;
}

export interface RuleTransition {
  readonly id: bigint;
  readonly prev: CachedRule | undefined;
  readonly next: CachedRule | undefined;
}

export interface SelectorGroup {
  readonly key: string;
  readonly selector: Labels;
  readonly rules: Map<bigint, CachedRule>;
  /** Rules of the group per kernel table (TableIndex). */
  readonly tables: number[];
}

export class RuleCache {
  revision = 0n;
  private readonly byId = new Map<bigint, CachedRule>();
  readonly groups = new Map<string, SelectorGroup>();
  /** Every label key any selector ever used (only grows). */
  readonly labelKeys = new Set<string>();
  private readonly deleted = new Set<bigint>();
  private readonly deletedRing: bigint[] = [];
  private deletedAt = 0;

  get size(): number {
    return this.byId.size;
  }

  get(id: bigint): CachedRule | undefined {
    return this.byId.get(id);
  }

  /** The rule exists, or was one of the last RECENT_DELETES deleted. */
  knows(id: bigint): boolean {
    return this.byId.has(id) || this.deleted.has(id);
  }

  private rememberDeleted(id: bigint): void {
    const old = this.deletedRing[this.deletedAt];
    if (old !== undefined) this.deleted.delete(old);
    this.deletedRing[this.deletedAt] = id;
    this.deletedAt = (this.deletedAt + 1) % RECENT_DELETES;
    this.deleted.add(id);
  }

  private group(key: string): SelectorGroup {
    let g = this.groups.get(key);
    if (!g) {
      const selector = parseSelectorKey(key);
      g = { key, selector, rules: new Map(), tables: [0, 0, 0, 0] };
      this.groups.set(key, g);
      for (const k of Object.keys(selector)) this.labelKeys.add(k);
    }
    return g;
  }

  private put(row: SyncRuleRow, encoded?: string): CachedRule {
    const g = this.group(row.selector_key);
    const r: CachedRule = { id: row.id, table: tableIndex(row.direction, row.cidr), sel: g.key, enc: encoded ?? encodeAgentRule(row) };
    this.byId.set(r.id, r);
    g.rules.set(r.id, r);
    g.tables[r.table]!++;
    return r;
  }

  private remove(r: CachedRule): void {
    this.byId.delete(r.id);
    const g = this.groups.get(r.sel);
    if (g) {
      if (g.rules.delete(r.id)) g.tables[r.table]!--;
      if (g.rules.size === 0) this.groups.delete(r.sel);
    }
  }

  clear(): void {
    this.byId.clear();
    this.groups.clear();
    this.revision = 0n;
  }

  /** Loads rows of a consistent read at `revision`. */
  loadRows(rows: Iterable<SyncRuleRow>): void {
    for (const row of rows) this.put(row);
  }

  /** Applies one revision's changes; returns what changed for each rule. */
  apply(revision: bigint, changes: readonly RuleChange[]): RuleTransition[] {
    const out: RuleTransition[] = [];
    for (const c of changes) {
      const prev = this.byId.get(c.ruleId);
      if (prev) this.remove(prev);
      const next = c.row ? this.put(c.row, c.encoded) : undefined;
      if (prev && !next) this.rememberDeleted(c.ruleId);
      if (prev || next) out.push({ id: c.ruleId, prev, next });
    }
    this.revision = revision;
    return out;
  }
}
