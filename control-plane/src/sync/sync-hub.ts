// Fan-out of revisions to the agents connected to this process.
//
// Nodes are grouped by their labels projected onto the label keys that
// selectors use (a node's unique hostname label does not split groups unless
// some selector names it): every node of a group receives byte-identical
// deltas and snapshots, so each revision is filtered and encoded once per
// group and the same buffers are written to each stream of the group.
import type { Labels } from '../rules/selector.js';
import { selectorMatches } from '../rules/selector.js';
import type { RuleCache, RuleTransition } from './rule-cache.js';
import { encodeDelta, encodeSnapshot } from './wire-encoding.js';

/** What the hub needs of an agent session. */
export interface HubSession {
  readonly nodeName: string;
  readonly labels: Labels;
  /** Set by the hub. */
  groupKey: string;
  /** Revision R's delta (one or more parts), in revision order. */
  deliver(revision: bigint, parts: readonly Buffer[], commitTimeMs?: number): void;
}

interface NodeGroup {
  readonly key: string;
  readonly labels: Labels;
  readonly sessions: Set<HubSession>;
  /** selector key -> whether this group's labels satisfy it. */
  readonly match: Map<string, boolean>;
  snapshot?: { revision: bigint; parts: Buffer[]; total: number };
}

export interface FanoutStats {
  groups: number;
  sessions: number;
  messages: number;
}

export class SyncHub {
  private readonly groups = new Map<string, NodeGroup>();
  private universe: string[] = [];
  private readonly sessions = new Set<HubSession>();

  constructor(
    private readonly cache: RuleCache,
    private readonly chunkBytes: number,
  ) {}

  get sessionCount(): number {
    return this.sessions.size;
  }

  get groupCount(): number {
    return this.groups.size;
  }

  private keyOf(labels: Labels): { key: string; projected: Labels } {
    const projected: Record<string, string> = {};
    for (const k of this.universe) {
      const v = labels[k];
      if (v !== undefined) projected[k] = v;
    }
    return { key: JSON.stringify(projected), projected };
  }

  /** Regroups every session when selectors started using a new label key. */
  private ensureUniverse(): void {
    if (this.cache.labelKeys.size === this.universe.length) return;
    this.universe = [...this.cache.labelKeys].sort();
    this.groups.clear();
    for (const s of this.sessions) this.join(s);
  }

  private join(s: HubSession): NodeGroup {
    const { key, projected } = this.keyOf(s.labels);
    let g = this.groups.get(key);
    if (!g) {
      g = { key, labels: projected, sessions: new Set(), match: new Map() };
      this.groups.set(key, g);
    }
    g.sessions.add(s);
    s.groupKey = key;
    return g;
  }

  private groupOf(s: HubSession): NodeGroup {
    this.ensureUniverse();
    const g = this.groups.get(s.groupKey);
    if (g?.sessions.has(s)) return g;
    return this.join(s);
  }

  private matches(g: NodeGroup, sel: string): boolean {
    let m = g.match.get(sel);
    if (m === undefined) {
      const sg = this.cache.groups.get(sel);
      m = sg ? selectorMatches(sg.selector, g.labels) : selectorMatches(JSON.parse(sel) as Labels, g.labels);
      g.match.set(sel, m);
    }
    return m;
  }

  /** Whether rules with selector key `sel` apply to this session's node. */
  selects(s: HubSession, sel: string): boolean {
    return this.matches(this.groupOf(s), sel);
  }

  /** Starts delivering revisions after the cache's current one to `s`. */
  register(s: HubSession): void {
    this.ensureUniverse();
    this.sessions.add(s);
    this.join(s);
  }

  unregister(s: HubSession): void {
    if (!this.sessions.delete(s)) return;
    const g = this.groups.get(s.groupKey);
    if (g) {
      g.sessions.delete(s);
      if (g.sessions.size === 0) this.groups.delete(g.key);
    }
  }

  /** The node's snapshot at the cache's revision (shared by its group). */
  snapshot(s: HubSession): { revision: bigint; parts: Buffer[]; total: number } {
    this.ensureUniverse();
    const { key, projected } = this.keyOf(s.labels);
    let g = this.groups.get(key);
    const probe: NodeGroup = g ?? { key, labels: projected, sessions: new Set(), match: new Map() };
    if (probe.snapshot && probe.snapshot.revision === this.cache.revision) return probe.snapshot;
    const selected = [...this.cache.groups.values()].filter((sg) => this.matches(probe, sg.key));
    let total = 0;
    for (const sg of selected) total += sg.rules.size;
    function* encoded(): Generator<string> {
      for (const sg of selected) for (const r of sg.rules.values()) yield r.enc;
    }
    const snap = { revision: this.cache.revision, parts: encodeSnapshot(this.cache.revision, encoded(), total, this.chunkBytes), total };
    if (!g) {
      g = probe;
      this.groups.set(key, g);
    }
    g.snapshot = snap;
    return snap;
  }

  /** Filters one revision per group and hands the parts to every session. */
  publish(revision: bigint, commitTime: Date, transitions: readonly RuleTransition[]): FanoutStats {
    this.ensureUniverse();
    const stats: FanoutStats = { groups: 0, sessions: 0, messages: 0 };
    let emptyParts: Buffer[] | undefined;
    const commitMs = commitTime.getTime();
    for (const g of [...this.groups.values()]) {
      g.snapshot = undefined;
      if (g.sessions.size === 0) {
        this.groups.delete(g.key);
        continue;
      }
      const upserts: string[] = [];
      const deletes: bigint[] = [];
      for (const t of transitions) {
        const nm = t.next !== undefined && this.matches(g, t.next.sel);
        const pm = t.prev !== undefined && this.matches(g, t.prev.sel);
        if (nm) {
          if (!(pm && t.prev!.enc === t.next!.enc)) upserts.push(t.next!.enc);
        } else if (pm) {
          deletes.push(t.id);
        }
      }
      let parts: Buffer[];
      if (upserts.length === 0 && deletes.length === 0) parts = emptyParts ??= encodeDelta(revision, commitTime, [], [], this.chunkBytes);
      else parts = encodeDelta(revision, commitTime, upserts, deletes, this.chunkBytes);
      stats.groups++;
      for (const s of g.sessions) {
        s.deliver(revision, parts, commitMs);
        stats.sessions++;
        stats.messages += parts.length;
      }
    }
    return stats;
  }
}
