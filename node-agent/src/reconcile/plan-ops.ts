// A plan's operations, in the order they run: PlanOpWriter writes them into
// reusable OpBatches (columns, no object per op) chunk by chunk, for the
// reconciler; planOps() and describeOps() give them as objects and text for
// tests and diagnostics.

import { formatPrefix } from '../../../common/src/cidr.js';
import { type MapOp, OpBatch } from '../datapath/datapath.js';
import type { Plan } from './plan-value.js';
import type { RuleTable } from './rule-table.js';

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
    const rs = t.rules;
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
            out.journalDelete(rs.id[pl.journalDeletes[this.i]!]!, rs.slot[pl.journalDeletes[this.i]!]!);
          }
          break;
        case 2:
          for (; this.i < pl.journalUpserts.length; this.i++) {
            if (out.full) return false;
            t.writeDesiredJournalUpsert(out, pl.journalUpserts[this.i]!, pl.journalUpsertSlots[this.i]!);
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

/** One op as text: "entry.upsert ingress 10.0.0.0/24 deny enforce slot 2", "journal.delete rule 7", ... */
export function formatOp(op: MapOp): string {
  switch (op.kind) {
    case 'entry.upsert': {
      const e = op.entry;
      return `entry.upsert ${e.direction} ${formatPrefix(e.prefix)} ${e.action} ${e.mode} slot ${e.slot}`;
    }
    case 'entry.delete':
      return `entry.delete ${op.direction} ${formatPrefix(op.prefix)}`;
    case 'journal.upsert': {
      const r = op.rule;
      const exp = r.expireUnixMs > 0 ? ` expires ${new Date(r.expireUnixMs).toISOString()}` : '';
      return `journal.upsert rule ${r.id} ${r.direction} ${formatPrefix(r.prefix)} ${r.action} ${r.mode} slot ${r.slot}${exp}`;
    }
    case 'journal.delete':
      return `journal.delete rule ${op.id}`;
    case 'counter.reset':
      return `counter.reset slot ${op.slot}`;
  }
}

/** The plan's ops as text, one line each, in order (at most `max` lines, then "... and N more"). Call before the plan is committed. */
export function describeOps(t: RuleTable, pl: Plan, max = 100): string[] {
  const out: string[] = [];
  for (const op of planOps(t, pl)) {
    if (out.length === max) {
      out.push(`... and ${pl.opCount - max} more`);
      break;
    }
    out.push(formatOp(op));
  }
  return out;
}
