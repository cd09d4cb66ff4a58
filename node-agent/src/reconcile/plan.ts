// plan(desired, actual) -> map operations. Pure: reads the rule table (the
// desired set, the journal state and the kernel state it mirrors) and the
// slot pool, changes neither, does no I/O. commitPlan() records a plan's
// effect once the datapath applied it.
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
// PlanOpWriter writes a plan's ops into a reusable OpBatch (columns, no
// object per op), chunk by chunk.

import { type DatapathCapacity, type MapOp, OpBatch } from '../datapath/datapath.js';
import type { SlotPool } from './slot-pool.js';
import { F_ALLOW, F_DESIRED, F_JOURNALED, F_MONITOR, F_SHADOW, type RuleTable, packEntry } from './rule-table.js';
import { type TableId, TABLES, tableName, v4KeyParts, v4Mask, v6KeyBytes, mask16 } from './prefix-key.js';

const NONE = -1;
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

export interface Plan {
  readonly full: boolean;
  /** New rules (record indexes) and the slot each takes, in pool order. */
  readonly newRules: Int32Array;
  readonly newSlots: Int32Array;
  readonly resets: Int32Array;
  readonly journalDeletes: Int32Array;
  readonly journalUpserts: Int32Array;
  /** The counter slot each journal upsert carries (a new rule's new slot, else its own). */
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
  readonly opCount: number;
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
function winner(t: RuleTable, p: number): number {
  let best = NONE;
  let bf = 0;
  for (let r = t.pHead[p]!; r !== NONE; r = t.next[r]!) {
    const f = t.flags[r]!;
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
    else better = t.id[r]! < t.id[best]!;
    if (better) {
      best = r;
      bf = f;
    }
  }
  return best;
}

function hasDesiredAllow(t: RuleTable, p: number): boolean {
  for (let r = t.pHead[p]!; r !== NONE; r = t.next[r]!) if ((t.flags[r]! & F_ALLOW) !== 0) return true;
  return false;
}

/** Per table, the prefix lengths at which desired allows exist. */
function allowLengths(t: RuleTable): number[][] {
  const out: number[][] = [[], [], [], []];
  for (const tb of TABLES) {
    const max = (tb & 1) === 1 ? 128 : 32;
    for (let l = 0; l <= max; l++) if (t.allowLens[tb * 129 + l]! > 0) out[tb]!.push(l);
  }
  return out;
}

/** True if a desired allow of the same table contains prefix record p. */
function coveredByAllow(t: RuleTable, p: number, lens: number[][]): boolean {
  const tb = t.pTable[p]! as TableId;
  const ls = lens[tb]!;
  if (ls.length === 0) return false;
  const len = t.pLen[p]!;
  if ((tb & 1) === 0) {
    const word = v4KeyParts(t.pKey[p]!).word;
    for (const l of ls) {
      if (l > len) break;
      const q = t.pfxV4(tb, (word & v4Mask(l)) >>> 0, l);
      if (q !== NONE && hasDesiredAllow(t, q)) return true;
    }
    return false;
  }
  const bytes = v6KeyBytes(t.pKeyV6.get(p)!);
  for (const l of ls) {
    if (l > len) break;
    const q = t.pfxV6(tb, mask16(bytes, l), l);
    if (q !== NONE && hasDesiredAllow(t, q)) return true;
  }
  return false;
}

/** Prefix records in scope: the dirty ones plus every prefix inside a changed allow. */
function scopePrefixes(t: RuleTable, full: boolean): Int32Array {
  const out = new IntList(full ? Math.max(16, t.pHigh) : 16);
  if (full) {
    for (let p = 0; p < t.pHigh; p++) if (t.pfxLive(p)) out.push(p);
    return out.done();
  }
  const seen = new Set<number>();
  for (const p of t.dirtyPfx)
    if (t.pfxLive(p) && !seen.has(p)) {
      seen.add(p);
      out.push(p);
    }
  const allows: number[] = [];
  for (const a of t.dirtyAllowPfx) {
    if (!t.pfxLive(a)) continue;
    const max = (t.pTable[a]! & 1) === 1 ? 128 : 32;
    if (t.pLen[a]! < max) allows.push(a);
  }
  if (allows.length > 0) {
    for (let p = 0; p < t.pHigh; p++) {
      if (!t.pfxLive(p) || seen.has(p)) continue;
      for (const a of allows) {
        if (t.pfxContains(a, p)) {
          seen.add(p);
          out.push(p);
          break;
        }
      }
    }
  }
  return out.done();
}

/** Computes the operations that take the kernel and journal to the desired set. Throws PlanError. */
export function plan(input: PlanInput): Plan {
  const { table: t, slots, capacity } = input;
  if (t.invalid.size > 0) {
    const [id, why] = t.invalid.entries().next().value as [bigint, string];
    throw new PlanError(
      'INVALID_ARGUMENT',
      'INVALID_RULE',
      `rule ${id} cannot be applied: ${why}${t.invalid.size > 1 ? ` (and ${t.invalid.size - 1} more)` : ''}`,
      {
        rule_id: String(id),
        invalid_rules: String(t.invalid.size),
      },
    );
  }
  const full = t.dirtyAll || t.dirtyAllowPfx.size > MAX_ALLOW_EXPANSIONS;

  // ---- rules: journal ops and slots ----
  const newRules = new IntList();
  const newSlots = new IntList();
  const resets = new IntList();
  const jDel = new IntList();
  const jUps = new IntList();
  const jUpsSlot = new IntList();
  let k = 0;
  const visitRule = (r: number): void => {
    const f = t.flags[r]!;
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
        jUpsSlot.push(t.slot[r]!);
      }
    } else if ((f & F_JOURNALED) !== 0) jDel.push(r);
  };
  if (full) {
    for (let r = 0; r < t.rHigh; r++) if (t.isLive(r)) visitRule(r);
  } else {
    for (const r of t.dirtyRules) if (t.isLive(r)) visitRule(r);
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
    const bySlot = new Int32Array(t.rHigh).fill(NONE);
    for (let i = 0; i < newRules.n; i++) bySlot[newRules.a[i]!] = newSlots.a[i]!;
    assignedSlot = (r) => bySlot[r]!;
  } else {
    const m = new Map<number, number>();
    for (let i = 0; i < newRules.n; i++) m.set(newRules.a[i]!, newSlots.a[i]!);
    assignedSlot = (r) => m.get(r)!;
  }

  // ---- prefixes: kernel entries ----
  const scope = scopePrefixes(t, full);
  const lens = allowLengths(t);
  const adds = [0, 0, 0, 0];
  const dels = [0, 0, 0, 0];
  const updEarly = new IntList();
  const updEarlyWant = new IntList();
  const addP = new IntList();
  const addWant = new IntList();
  const del = new IntList();
  for (let i = 0; i < scope.length; i++) {
    const p = scope[i]!;
    const w = winner(t, p);
    let want = NONE;
    if (w !== NONE) {
      const f = t.flags[w]!;
      const allow = (f & F_ALLOW) !== 0;
      if (allow || !coveredByAllow(t, p, lens)) {
        const slot = (f & F_JOURNALED) !== 0 ? t.slot[w]! : assignedSlot(w);
        want = packEntry(slot, allow, (f & F_MONITOR) !== 0);
      }
    }
    const have = t.pKernel[p]!;
    if (want === have) continue;
    const tb = t.pTable[p]!;
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
    tableAfter[tb] = t.kernelCount[tb]! + adds[tb]! - dels[tb]!;
    if (tableAfter[tb]! > capacity.prefixesPerTable) {
      throw new PlanError(
        'RESOURCE_EXHAUSTED',
        'TABLE_FULL',
        `${tableName(tb)} table full: the rule set needs ${tableAfter[tb]} prefixes, the table holds ${capacity.prefixesPerTable} (now ${t.kernelCount[tb]}); delete rules or recreate the maps with a larger --capacity-prefixes`,
        {
          table: tableName(tb),
          needed: String(tableAfter[tb]),
          capacity: String(capacity.prefixesPerTable),
          current: String(t.kernelCount[tb]),
        },
      );
    }
  }
  // Adds that fit next to the entries still in the table go first; the rest
  // wait until the deletes made room.
  const room = TABLES.map((tb) => capacity.prefixesPerTable - t.kernelCount[tb]!);
  const lateP = new IntList();
  const lateWant = new IntList();
  for (let i = 0; i < addP.n; i++) {
    const p = addP.a[i]!;
    const tb = t.pTable[p]!;
    if (room[tb]! > 0) {
      room[tb]!--;
      updEarly.push(p);
      updEarlyWant.push(addWant.a[i]!);
    } else {
      lateP.push(p);
      lateWant.push(addWant.a[i]!);
    }
  }
  const opCount = resets.n + jDel.n + jUps.n + updEarly.n + del.n + lateP.n;
  return {
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
    opCount,
  };
}

/**
 * Writes a plan's operations, in order, into OpBatches: fill() appends until
 * the batch is full and resumes where it stopped on the next call (a million
 * ops need not exist at once, nor one object per op).
 */
export class PlanOpWriter {
  private section = 0;
  private i = 0;

  constructor(
    private readonly t: RuleTable,
    private readonly pl: Plan,
  ) {}

  /** Appends the next ops to `out` until it is full. Returns true once every op is written. */
  fill(out: OpBatch): boolean {
    const { t, pl } = this;
    for (;;) {
      switch (this.section) {
        case 0:
          for (; this.i < pl.resets.length; this.i++) {
            if (out.full) return false;
            out.counterReset(pl.resets[this.i]!);
          }
          break;
        case 1:
          for (; this.i < pl.journalDeletes.length; this.i++) {
            if (out.full) return false;
            out.journalDelete(t.id[pl.journalDeletes[this.i]!]!);
          }
          break;
        case 2:
          for (; this.i < pl.journalUpserts.length; this.i++) {
            if (out.full) return false;
            t.writeDesiredJournalRule(out, pl.journalUpserts[this.i]!, pl.journalUpsertSlots[this.i]!);
          }
          break;
        case 3:
          for (; this.i < pl.upsertsEarly.length; this.i++) {
            if (out.full) return false;
            t.writeEntryUpsert(out, pl.upsertsEarly[this.i]!, pl.upsertsEarlyWant[this.i]!);
          }
          break;
        case 4:
          for (; this.i < pl.deletes.length; this.i++) {
            if (out.full) return false;
            t.writeEntryDelete(out, pl.deletes[this.i]!);
          }
          break;
        case 5:
          for (; this.i < pl.upsertsLate.length; this.i++) {
            if (out.full) return false;
            t.writeEntryUpsert(out, pl.upsertsLate[this.i]!, pl.upsertsLateWant[this.i]!);
          }
          break;
        default:
          return true;
      }
      this.section++;
      this.i = 0;
    }
  }
}

/** The plan's operations as MapOp objects, lazily (tests, diagnostics). */
export function* planOps(t: RuleTable, pl: Plan): Generator<MapOp> {
  const w = new PlanOpWriter(t, pl);
  const b = new OpBatch(1024);
  for (;;) {
    b.clear();
    const done = w.fill(b);
    for (let i = 0; i < b.length; i++) yield b.op(i);
    if (done) return;
  }
}

/** All of a plan's operations as one array (small plans, tests). */
export function planOpsArray(t: RuleTable, pl: Plan): MapOp[] {
  return [...planOps(t, pl)];
}

/** Records an applied plan in the table and the slot pool. */
export function commitPlan(t: RuleTable, slots: SlotPool, pl: Plan): void {
  slots.take(pl.newSlots, pl.newRules);
  for (let i = 0; i < pl.newRules.length; i++) t.markJournaled(pl.newRules[i]!, pl.newSlots[i]!);
  for (let i = 0; i < pl.journalUpserts.length; i++) {
    const r = pl.journalUpserts[i]!;
    if ((t.flags[r]! & F_SHADOW) !== 0) t.markJournaled(r, t.slot[r]!);
  }
  for (let i = 0; i < pl.journalDeletes.length; i++) {
    const r = pl.journalDeletes[i]!;
    slots.retire(t.slot[r]!, t.id[r]!);
    t.markUnjournaled(r);
  }
  for (let i = 0; i < pl.upsertsEarly.length; i++) t.setKernel(pl.upsertsEarly[i]!, pl.upsertsEarlyWant[i]!);
  for (let i = 0; i < pl.deletes.length; i++) t.setKernel(pl.deletes[i]!, NONE);
  for (let i = 0; i < pl.upsertsLate.length; i++) t.setKernel(pl.upsertsLate[i]!, pl.upsertsLateWant[i]!);
  for (let i = 0; i < pl.scopePfx.length; i++) t.freePfxIfEmpty(pl.scopePfx[i]!);
  t.clearDirty();
}
