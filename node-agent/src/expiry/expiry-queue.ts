// Local expiry: rules with an expire time leave the kernel at that time, even
// while the control plane is unreachable. A binary min-heap of (time, record,
// rule id) in typed arrays; entries are checked lazily against the rule
// table when they come due (a record changed or deleted since is skipped).

/** What expires: the rule table. */
export interface ExpiryTarget {
  /** Removes record r from the desired set if it still holds rule `id`, desired, with expiry `at`; true if it did. */
  expireRecord(r: number, id: bigint, at: number): boolean;
}

export class ExpiryQueue {
  private times = new Float64Array(64);
  private recs = new Int32Array(64);
  private ids = new BigUint64Array(64);
  private n = 0;
  /** Earliest expiry pushed since takeEarliestPush() (Infinity: none). */
  private earliestPush = Infinity;

  get size(): number {
    return this.n;
  }

  /** Earliest pending expiry (Unix ms), or Infinity. */
  get next(): number {
    return this.n > 0 ? this.times[0]! : Infinity;
  }

  /**
   * The earliest expiry pushed since the last call (Infinity: none), so the
   * owner can bring its timer forward; resets it.
   */
  takeEarliestPush(): number {
    const at = this.earliestPush;
    this.earliestPush = Infinity;
    return at;
  }

  /** Record r (rule `id`) expires at `at` (Unix ms). */
  push(r: number, id: bigint, at: number): void {
    if (at < this.earliestPush) this.earliestPush = at;
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
   * Takes every entry due at or before `now` off the queue and expires it in
   * `target`. Returns how many rules left the desired set.
   */
  expire(now: number, target: ExpiryTarget): number {
    let removed = 0;
    while (this.n > 0 && this.times[0]! <= now) {
      const at = this.times[0]!;
      const r = this.recs[0]!;
      const id = this.ids[0]!;
      this.pop();
      // Still the same rule, still desired, still with this expiry?
      if (target.expireRecord(r, id, at)) removed++;
    }
    return removed;
  }
}
