// plan(desired, actual) -> Plan. Pure: reads the rule table (the desired
// set, the journal state and the kernel state it mirrors, through their
// read-only views) and the slot pool, changes neither, does no I/O.
//
// What the plan decides:
//  - the kernel entry of every prefix in scope: among the desired rules with
//    that exact prefix, allow beats deny, enforce beats monitor, then the
//    lowest id; a deny whose prefix lies inside a desired allow of the same
//    table is left out (allow-covers-deny pruning), so one longest-prefix
//    lookup in the kernel gives decide()'s verdict and counted rule;
//  - counter slots: a rule keeps its slot for life; new rules take freed
//    slots first (zeroed by counter.reset when they may hold counts);
//  - capacity: a change that would overfill a table or the counter slots is
//    refused before any operation is produced (RESOURCE_EXHAUSTED naming the
//    table and the numbers);
//  - order, so that no moment is without enforcement: counter resets, journal
//    deletes, journal upserts (write-ahead), entry upserts, then entry
//    deletes. Only when a table has no room for its new entries next to the
//    ones leaving does part of the adds wait until after the deletes (late
//    adds): the table is never over capacity at any point of that order,
//    which is what the datapath checks, so the whole plan goes in one
//    stream of apply calls.
//
// The result is a Plan (plan-value.ts): columns of record indexes, counts
// and a readable summary. plan-ops.ts turns it into ops (an OpBatch, chunk
// by chunk); commitPlan() records it in the table and the slot pool once the
// datapath applied them.

import type { DatapathCapacity } from '../datapath/datapath.js';
import type { DirtyView } from './dirty-scope.js';
import { Plan } from './plan-value.js';
import type { PrefixView } from './prefix-records.js';
import { type TableId, TABLES, tableName, v4Mask, mask16 } from './prefix-key.js';
import { F_ALLOW, F_DESIRED, F_JOURNALED, F_MONITOR, F_SHADOW, NONE, packEntry } from './rule-flags.js';
import type { RuleView } from './rule-records.js';
import type { RuleTable } from './rule-table.js';
import type { SlotPool } from './slot-pool.js';

/** Above this many changed allow prefixes, a full plan is cheaper than expanding each. */
const MAX_ALLOW_EXPANSIONS = 16;

export type PlanErrorReason = 'TABLE_FULL' | 'COUNTER_SLOTS_EXHAUSTED' | 'INVALID_RULE';

export class PlanError extends Error {
  override readonly name = 'PlanError';
  constructor(
    /** google.rpc.Code name. */
    readonly code: 'RESOURCE_EXHAUSTED' | 'INVALID_ARGUMENT',
    readonly reason: PlanErrorReason,
    message: string,
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    super(message);
  }
}

export interface PlanInput {
  readonly table: RuleTable;
  readonly slots: SlotPool;
  readonly capacity: DatapathCapacity;
}

class IntList {
  a: Int32Array;
  n = 0;
  constructor(cap = 16) {
    this.a = new Int32Array(cap);
  }
  push(v: number): void {
    if (this.n === this.a.length) {
      const b = new Int32Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = v;
  }
  done(): Int32Array {
    return this.a.slice(0, this.n);
  }
}

/** The desired winner at prefix record p, or -1. */
function winner(rs: RuleView, ps: PrefixView, p: number): number {
  let best = NONE;
  let bf = 0;
  for (let r = ps.head[p]!; r !== NONE; r = rs.next[r]!) {
    const f = rs.flags[r]!;
    if (best === NONE) {
      best = r;
      bf = f;
      continue;
    }
    const a = f & F_ALLOW;
    const ba = bf & F_ALLOW;
    let better: boolean;
    if (a !== ba) better = a !== 0;
    else if ((f & F_MONITOR) !== (bf & F_MONITOR)) better = (f & F_MONITOR) === 0;
    else better = rs.id[r]! < rs.id[best]!;
    if (better) {
      best = r;
      bf = f;
    }
  }
  return best;
}

function hasDesiredAllow(rs: RuleView, ps: PrefixView, p: number): boolean {
  for (let r = ps.head[p]!; r !== NONE; r = rs.next[r]!) if ((rs.flags[r]! & F_ALLOW) !== 0) return true;
  return false;
}

/** True if a desired allow of the same table contains prefix record p (lens: RuleTable.allowLengths()). */
function coveredByAllow(rs: RuleView, ps: PrefixView, p: number, lens: number[][]): boolean {
  const tb = ps.table[p]! as TableId;
  const ls = lens[tb]!;
  if (ls.length === 0) return false;
  const len = ps.len[p]!;
  if ((tb & 1) === 0) {
    const word = ps.v4Word(p);
    for (const l of ls) {
      if (l > len) break;
      const q = ps.lookupV4(tb, (word & v4Mask(l)) >>> 0, l);
      if (q !== NONE && hasDesiredAllow(rs, ps, q)) return true;
    }
    return false;
  }
  const bytes = ps.v6Bytes(p);
  for (const l of ls) {
    if (l > len) break;
    const q = ps.lookupV6(tb, mask16(bytes, l), l);
    if (q !== NONE && hasDesiredAllow(rs, ps, q)) return true;
  }
  return false;
}

/** Prefix records in scope: the dirty ones plus every prefix inside a changed allow. */
function scopePrefixes(ps: PrefixView, dirty: DirtyView, full: boolean): Int32Array {
  const out = new IntList(full ? Math.max(16, ps.high) : 16);
  if (full) {
    for (let p = 0; p < ps.high; p++) if (ps.live(p)) out.push(p);
    return out.done();
  }
  const seen = new Set<number>();
  for (const p of dirty.prefixes)
    if (ps.live(p) && !seen.has(p)) {
      seen.add(p);
      out.push(p);
    }
  const allows: number[] = [];
  for (const a of dirty.allowPrefixes) {
    if (!ps.live(a)) continue;
    const max = (ps.table[a]! & 1) === 1 ? 128 : 32;
    if (ps.len[a]! < max) allows.push(a);
  }
  if (allows.length > 0) {
    for (let p = 0; p < ps.high; p++) {
      if (!ps.live(p) || seen.has(p)) continue;
      for (const a of allows) {
        if (ps.contains(a, p)) {
          seen.add(p);
          out.push(p);
          break;
        }
      }
    }
  }
  return out.done();
}

/** Computes the plan that takes the kernel and journal to the desired set. Throws PlanError. */
export function plan(input: PlanInput): Plan {
  const { table: t, slots, capacity } = input;
  const invalid = t.invalidRules;
  if (invalid.size > 0) {
    const [id, why] = invalid.entries().next().value as [bigint, string];
    throw new PlanError(
      'INVALID_ARGUMENT',
      'INVALID_RULE',
      `rule ${id} cannot be applied: ${why}${invalid.size > 1 ? ` (and ${invalid.size - 1} more)` : ''}`,
      {
        rule_id: String(id),
        invalid_rules: String(invalid.size),
      },
    );
  }
  const rs = t.rules;
  const ps = t.prefixes;
  const kernel = t.kernel;
  const dirty = t.dirty;
  const full = dirty.all || dirty.allowPrefixes.size > MAX_ALLOW_EXPANSIONS;

  // ---- rules: journal ops and slots ----
  const newRules = new IntList();
  const newSlots = new IntList();
  const resets = new IntList();
  const jDel = new IntList();
  const jUps = new IntList();
  const jUpsSlot = new IntList();
  let k = 0;
  const visitRule = (r: number): void => {
    const f = rs.flags[r]!;
    if ((f & F_DESIRED) !== 0) {
      if ((f & F_JOURNALED) === 0) {
        if (k >= slots.available) {
          k++;
          return;
        }
        const s = slots.peek(k++);
        newRules.push(r);
        newSlots.push(s);
        if (slots.needsReset(s)) resets.push(s);
        jUps.push(r);
        jUpsSlot.push(s);
      } else if ((f & F_SHADOW) !== 0) {
        jUps.push(r);
        jUpsSlot.push(rs.slot[r]!);
      }
    } else if ((f & F_JOURNALED) !== 0) jDel.push(r);
  };
  if (full) {
    for (let r = 0; r < rs.high; r++) if (rs.isLive(r)) visitRule(r);
  } else {
    for (const r of dirty.rules) if (rs.isLive(r)) visitRule(r);
  }
  if (k > slots.available) {
    throw new PlanError(
      'RESOURCE_EXHAUSTED',
      'COUNTER_SLOTS_EXHAUSTED',
      `rule counter slots exhausted: ${k} new rules need a slot, ${slots.available} of ${slots.capacity} are free (${slots.retired.size} await their final counter report); delete rules or recreate the maps with a larger --capacity-slots`,
      { needed: String(k), free: String(slots.available), capacity: String(slots.capacity) },
    );
  }

  // Slot given to a new rule, by record index (a typed array when many: no big Map).
  let assignedSlot: (r: number) => number;
  if (newRules.n > 256) {
    const bySlot = new Int32Array(rs.high).fill(NONE);
    for (let i = 0; i < newRules.n; i++) bySlot[newRules.a[i]!] = newSlots.a[i]!;
    assignedSlot = (r) => bySlot[r]!;
  } else {
    const m = new Map<number, number>();
    for (let i = 0; i < newRules.n; i++) m.set(newRules.a[i]!, newSlots.a[i]!);
    assignedSlot = (r) => m.get(r)!;
  }

  // ---- prefixes: kernel entries ----
  const scope = scopePrefixes(ps, dirty, full);
  const lens = t.allowLengths();
  const adds = [0, 0, 0, 0];
  const dels = [0, 0, 0, 0];
  const updEarly = new IntList();
  const updEarlyWant = new IntList();
  const addP = new IntList();
  const addWant = new IntList();
  const del = new IntList();
  for (let i = 0; i < scope.length; i++) {
    const p = scope[i]!;
    const w = winner(rs, ps, p);
    let want = NONE;
    if (w !== NONE) {
      const f = rs.flags[w]!;
      const allow = (f & F_ALLOW) !== 0;
      if (allow || !coveredByAllow(rs, ps, p, lens)) {
        const slot = (f & F_JOURNALED) !== 0 ? rs.slot[w]! : assignedSlot(w);
        want = packEntry(slot, allow, (f & F_MONITOR) !== 0);
      }
    }
    const have = kernel.entryOf(p);
    if (want === have) continue;
    const tb = ps.table[p]!;
    if (want === NONE) {
      del.push(p);
      dels[tb]!++;
    } else if (have === NONE) {
      addP.push(p);
      addWant.push(want);
      adds[tb]!++;
    } else {
      updEarly.push(p);
      updEarlyWant.push(want);
    }
  }

  const tableAfter = [0, 0, 0, 0];
  for (const tb of TABLES) {
    const now = kernel.count[tb]!;
    tableAfter[tb] = now + adds[tb]! - dels[tb]!;
    if (tableAfter[tb]! > capacity.prefixesPerTable) {
      throw new PlanError(
        'RESOURCE_EXHAUSTED',
        'TABLE_FULL',
        `${tableName(tb)} table full: the rule set needs ${tableAfter[tb]} prefixes, the table holds ${capacity.prefixesPerTable} (now ${now}); delete rules or recreate the maps with a larger --capacity-prefixes`,
        {
          table: tableName(tb),
          needed: String(tableAfter[tb]),
          capacity: String(capacity.prefixesPerTable),
          current: String(now),
        },
      );
    }
  }
  // Adds that fit next to the entries still in the table go first; the rest
  // wait until the deletes made room.
  const room = TABLES.map((tb) => capacity.prefixesPerTable - kernel.count[tb]!);
  const lateP = new IntList();
  const lateWant = new IntList();
  for (let i = 0; i < addP.n; i++) {
    const p = addP.a[i]!;
    const tb = ps.table[p]!;
    if (room[tb]! > 0) {
      room[tb]!--;
      updEarly.push(p);
      updEarlyWant.push(addWant.a[i]!);
    } else {
      lateP.push(p);
      lateWant.push(addWant.a[i]!);
    }
  }
  return new Plan({
    full,
    newRules: newRules.done(),
    newSlots: newSlots.done(),
    resets: resets.done(),
    journalDeletes: jDel.done(),
    journalUpserts: jUps.done(),
    journalUpsertSlots: jUpsSlot.done(),
    upsertsEarly: updEarly.done(),
    upsertsEarlyWant: updEarlyWant.done(),
    deletes: del.done(),
    upsertsLate: lateP.done(),
    upsertsLateWant: lateWant.done(),
    scopePfx: scope,
    tableAfter,
  });
}

/** Records an applied plan in the slot pool and the table (its journal and kernel sides). */
export function commitPlan(t: RuleTable, slots: SlotPool, pl: Plan): void {
  slots.take(pl.newSlots, pl.newRules);
  // Deleted rules' slots wait for their final counter report (their records may be freed by commit).
  const rs = t.rules;
  for (let i = 0; i < pl.journalDeletes.length; i++) {
    const r = pl.journalDeletes[i]!;
    slots.retire(rs.slot[r]!, rs.id[r]!);
  }
  t.commit(pl);
}
