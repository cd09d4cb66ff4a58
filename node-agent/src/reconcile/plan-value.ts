// A plan as a value: what plan() decided, in columns of record indexes (no
// object per op), with its op counts and a readable summary. It refers to
// the rule table it was computed from (records, not copies): turn it into
// ops with plan-ops.ts, record it with commitPlan(), before the table
// changes again.

import { TABLES, tableName } from './prefix-key.js';

/** The columns of a plan. */
export interface PlanColumns {
  /** Every prefix and rule was looked at (not only the dirty ones). */
  readonly full: boolean;
  /** New rules (record indexes) and the slot each takes, in pool order. */
  readonly newRules: Int32Array;
  readonly newSlots: Int32Array;
  /** Counter slots zeroed before a new rule takes them. */
  readonly resets: Int32Array;
  /** Rule records whose journal entry goes. */
  readonly journalDeletes: Int32Array;
  /** Rule records whose desired version is journaled... */
  readonly journalUpserts: Int32Array;
  /** ...with this counter slot (a new rule's new slot, else its own). */
  readonly journalUpsertSlots: Int32Array;
  /** Prefix records and their new packed entries: updates and adds that fit, then deletes, then late adds. */
  readonly upsertsEarly: Int32Array;
  readonly upsertsEarlyWant: Int32Array;
  readonly deletes: Int32Array;
  readonly upsertsLate: Int32Array;
  readonly upsertsLateWant: Int32Array;
  /** Every prefix record the plan looked at (freed at commit if empty). */
  readonly scopePfx: Int32Array;
  /** Kernel entries per table once applied. */
  readonly tableAfter: readonly number[];
}

/** A plan's ops by kind, in the order they run. */
export interface PlanCounts {
  readonly counterResets: number;
  readonly journalDeletes: number;
  readonly journalUpserts: number;
  readonly entryUpserts: number;
  readonly entryDeletes: number;
  /** Entry upserts that fit only once the deletes made room. */
  readonly lateEntryUpserts: number;
}

const KINDS: readonly (readonly [keyof PlanCounts, string, string])[] = [
  ['counterResets', 'counter reset', 'counter resets'],
  ['journalDeletes', 'journal delete', 'journal deletes'],
  ['journalUpserts', 'journal upsert', 'journal upserts'],
  ['entryUpserts', 'entry upsert', 'entry upserts'],
  ['entryDeletes', 'entry delete', 'entry deletes'],
  ['lateEntryUpserts', 'late entry upsert', 'late entry upserts'],
];

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;

// The class carries the columns as its own fields (declaration merging with PlanColumns).
export interface Plan extends PlanColumns {}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface only declares the columns the constructor assigns
export class Plan {
  /** Ops in all. */
  readonly opCount: number;

  constructor(c: PlanColumns) {
    Object.assign(this, c);
    this.opCount =
      c.resets.length + c.journalDeletes.length + c.journalUpserts.length + c.upsertsEarly.length + c.deletes.length + c.upsertsLate.length;
  }

  get counts(): PlanCounts {
    return {
      counterResets: this.resets.length,
      journalDeletes: this.journalDeletes.length,
      journalUpserts: this.journalUpserts.length,
      entryUpserts: this.upsertsEarly.length,
      entryDeletes: this.deletes.length,
      lateEntryUpserts: this.upsertsLate.length,
    };
  }

  private get heading(): string {
    return `${this.full ? 'full' : 'incremental'} plan`;
  }

  /** Kernel entries per table once applied, e.g. "ingress IPv4 3, ingress IPv6 0, egress IPv4 1, egress IPv6 0". */
  private get after(): string {
    return TABLES.map((t) => `${tableName(t)} ${this.tableAfter[t]}`).join(', ');
  }

  /**
   * One line: "incremental plan: 4 ops (1 counter reset, 1 journal upsert,
   * 2 entry upserts), 1 new rule; entries after: ingress IPv4 2, ..." (kinds
   * with no op left out), or "...: no ops".
   */
  toString(): string {
    if (this.opCount === 0) return `${this.heading}: no ops`;
    const c = this.counts;
    const kinds = KINDS.filter(([k]) => c[k] > 0).map(([k, one, many]) => plural(c[k], one, many));
    return `${this.heading}: ${plural(this.opCount, 'op', 'ops')} (${kinds.join(', ')}), ${plural(this.newRules.length, 'new rule', 'new rules')}; entries after: ${this.after}`;
  }

  /** Several lines: the heading, then every kind of op in the order they run with its count, then the entries after. */
  describe(): string {
    const c = this.counts;
    const width = Math.max(...KINDS.map(([, , many]) => many.length));
    const lines = [`${this.heading}: ${plural(this.opCount, 'op', 'ops')}, ${plural(this.newRules.length, 'new rule', 'new rules')}`];
    KINDS.forEach(([k, , many], i) => {
      lines.push(`  ${i + 1}. ${many.padEnd(width)}  ${c[k]}`);
    });
    lines.push(`  entries after: ${this.after}`);
    return lines.join('\n');
  }
}
