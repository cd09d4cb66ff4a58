// This process's copy of the rule set at one revision, kept for the sync
// fan-out: every rule pre-encoded as AgentRule bytes, grouped by selector so
// a node's snapshot is the union of the groups its labels satisfy. Changed
// only by the revision feed, in revision order, synchronously (no await
// between reading the cache and registering a session for what follows).
import { type Labels, parseSelectorKey } from '../rules/selector.js';
import type { RuleChange, SyncRuleRow } from '../store/change-log.js';
import { encodeAgentRule } from './wire-encoding.js';

export interface CachedRule {
  readonly id: bigint;
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
}

export class RuleCache {
  revision = 0n;
  private readonly byId = new Map<bigint, CachedRule>();
  readonly groups = new Map<string, SelectorGroup>();
  /** Every label key any selector ever used (only grows). */
  readonly labelKeys = new Set<string>();

  get size(): number {
    return this.byId.size;
  }

  get(id: bigint): CachedRule | undefined {
    return this.byId.get(id);
  }

  private group(key: string): SelectorGroup {
    let g = this.groups.get(key);
    if (!g) {
      const selector = parseSelectorKey(key);
      g = { key, selector, rules: new Map() };
      this.groups.set(key, g);
      for (const k of Object.keys(selector)) this.labelKeys.add(k);
    }
    return g;
  }

  private put(row: SyncRuleRow, encoded?: string): CachedRule {
    const g = this.group(row.selector_key);
    const r: CachedRule = { id: row.id, sel: g.key, enc: encoded ?? encodeAgentRule(row) };
    this.byId.set(r.id, r);
    g.rules.set(r.id, r);
    return r;
  }

  private remove(r: CachedRule): void {
    this.byId.delete(r.id);
    const g = this.groups.get(r.sel);
    if (g) {
      g.rules.delete(r.id);
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
      if (prev || next) out.push({ id: c.ruleId, prev, next });
    }
    this.revision = revision;
    return out;
  }
}
