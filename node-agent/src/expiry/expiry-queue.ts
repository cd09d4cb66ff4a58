// Local expiry: rules with an expire time leave the kernel at that time, even
// while the control plane is unreachable. A binary min-heap of (time, record)
// in typed arrays; entries are checked lazily against the table when they
// come due (a record changed or deleted since is simply skipped).

import type { RuleTable } from '../reconcile/rule-table.js';
import { F_DESIRED } from '../reconcile/rule-table.js';

export class ExpiryQueue {
  private times = new Float64Array(64);
  private recs = new Int32Array(64);
  private ids = new BigUint64Array(64);
  private n = 0;

  constructor(private readonly table: RuleTable) {}

  get size(): number {
    return this.n;
  }

  /** Earliest pending expiry (Unix ms), or Infinity. */
  get next(): number {
    return this.n > 0 ? this.times[0]! : Infinity;
  }

  push(r: number, at: number): void {
    if (this.n === this.times.length) {
      const t = new Float64Array(this.n * 2);
      t.set(this.times);
      this.times = t;
      const rr = new Int32Array(this.n * 2);
      rr.set(this.recs);
      this.recs = rr;
      const ii = new BigUint64Array(this.n * 2);
      ii.set(this.ids);
      this.ids = ii;
    }
    let i = this.n++;
    const id = this.table.id[r]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.times[parent]! <= at) break;
      this.times[i] = this.times[parent]!;
      this.recs[i] = this.recs[parent]!;
      this.ids[i] = this.ids[parent]!;
      i = parent;
    }
    this.times[i] = at;
    this.recs[i] = r;
    this.ids[i] = id;
  }

  private pop(): void {
    const last = --this.n;
    if (last === 0) return;
    const at = this.times[last]!;
    const r = this.recs[last]!;
    const id = this.ids[last]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= last) break;
      const c = l + 1 < last && this.times[l + 1]! < this.times[l]! ? l + 1 : l;
      if (this.times[c]! >= at) break;
      this.times[i] = this.times[c]!;
      this.recs[i] = this.recs[c]!;
      this.ids[i] = this.ids[c]!;
      i = c;
    }
    this.times[i] = at;
    this.recs[i] = r;
    this.ids[i] = id;
  }

  /**
   * Removes every desired rule whose expiry is at or before `now` from the
   * desired set. Returns how many left.
   */
  expire(now: number): number {
    const t = this.table;
    let removed = 0;
    while (this.n > 0 && this.times[0]! <= now) {
      const at = this.times[0]!;
      const r = this.recs[0]!;
      const id = this.ids[0]!;
      this.pop();
      // Still the same rule, still desired, still with this expiry?
      if (r < t.rHigh && t.id[r] === id && (t.flags[r]! & F_DESIRED) !== 0 && t.expireOf(r) === at) {
        t.removeRecord(r);
        removed++;
      }
    }
    return removed;
  }
}
