// The kernel state as the agent last applied (or read back) it: per prefix
// record, the entry the kernel holds (packEntry: slot, allow, monitor) or -1,
// and the entry count of each of the four tables. This is the "actual" side
// the planner diffs against; it changes only when a plan is committed or the
// pins are read back at start.

import { growI32 } from './grow.js';
import type { TableId } from './prefix-key.js';
import { NONE } from './rule-flags.js';

/** The kernel state as its readers see it (read only). */
export interface KernelView {
  /** Entries per table. */
  readonly count: readonly number[];
  readonly total: number;
  /** The packed entry the kernel holds at prefix record p, or -1. */
  entryOf(p: number): number;
}

export class KernelState implements KernelView {
  /** Packed entry per prefix record; records past the end hold none. */
  private entry: Int32Array;
  readonly count = [0, 0, 0, 0];

  constructor(expected: number) {
    this.entry = new Int32Array(expected).fill(NONE);
  }

  get total(): number {
    return this.count[0]! + this.count[1]! + this.count[2]! + this.count[3]!;
  }

  entryOf(p: number): number {
    return p < this.entry.length ? this.entry[p]! : NONE;
  }

  /** Makes room for `n` prefix records at once. */
  reserve(n: number): void {
    if (n > this.entry.length) this.entry = growI32(this.entry, n, NONE);
  }

  /** Prefix record p (of table t) holds `packed` in the kernel (-1: no entry). */
  set(p: number, t: TableId, packed: number): void {
    if (p >= this.entry.length) this.entry = growI32(this.entry, Math.max(p + 1, Math.ceil(this.entry.length * 1.5)), NONE);
    const was = this.entry[p]!;
    if (was === NONE && packed !== NONE) this.count[t]!++;
    else if (was !== NONE && packed === NONE) this.count[t]!--;
    this.entry[p] = packed;
  }
}
