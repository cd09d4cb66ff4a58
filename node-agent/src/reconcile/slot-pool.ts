// Rule counter slots: which slot each journaled rule counts into, which are
// free, which must be zeroed before reuse, and which belong to deleted rules
// whose final totals have not reached the control plane yet.
//
// A slot stays with a rule for the rule's whole life. A deleted rule's slot is
// RETIRED first (the next counter report carries its final totals), then
// RELEASED to the free list once the control plane acknowledged that report,
// and zeroed (counter.reset) when the planner hands it to a new rule.

const NONE = -1;

export class SlotPool {
  /** Slot -> rule record index (or -1). Read by the counter reporter. */
  readonly owner: Int32Array;
  /** 1 = may hold counts: zero it before giving it to a new rule. */
  private readonly dirty: Uint8Array;
  private free: Int32Array;
  private freeTop = 0;
  /** Slots at and above the watermark were never handed out by this process. */
  private watermarkValue = 0;
  /** Deleted rules' slots awaiting their final report: slot -> rule id. */
  readonly retired = new Map<number, bigint>();
  private locked = false;
  private readonly deferredReleases: number[] = [];

  constructor(readonly capacity: number) {
    this.owner = new Int32Array(capacity).fill(NONE);
    this.dirty = new Uint8Array(capacity);
    this.free = new Int32Array(64);
  }

  /** Slots a plan may hand out right now. */
  get available(): number {
    return this.freeTop + (this.capacity - this.watermarkValue);
  }

  /** Highest slot ever handed out + 1: the counter reporter reads [0, watermark). */
  get watermark(): number {
    return this.watermarkValue;
  }

  get inUse(): number {
    return this.watermarkValue - this.freeTop - this.retired.size;
  }

  /**
   * At start: `owners[slot]` is the record index of the journaled rule that
   * owns the slot (-1: none); `nonZero` says which slots hold counts (from one
   * counter read), so unused slots are zeroed before reuse only when needed.
   */
  load(owners: Int32Array, nonZero: (slot: number) => boolean): void {
    let max = -1;
    for (let s = 0; s < this.capacity && s < owners.length; s++) {
      const r = owners[s]!;
      if (r < 0) continue;
      this.owner[s] = r;
      this.dirty[s] = 1;
      max = s;
    }
    this.watermarkValue = max + 1;
    this.freeTop = 0;
    // Free slots below the watermark, lowest on top.
    for (let s = max; s >= 0; s--) if (this.owner[s] === NONE) this.pushFree(s);
    for (let s = 0; s < this.capacity; s++) if (this.owner[s] === NONE && nonZero(s)) this.dirty[s] = 1;
  }

  /** The k-th slot the next allocations would take (k < available), without taking it. */
  peek(k: number): number {
    if (k < this.freeTop) return this.free[this.freeTop - 1 - k]!;
    return this.watermarkValue + (k - this.freeTop);
  }

  needsReset(slot: number): boolean {
    return this.dirty[slot] === 1;
  }

  /** Takes the first `n` slots peek() returned, giving slot i to owners[i]. */
  take(slots: Int32Array, owners: Int32Array): void {
    for (let k = 0; k < slots.length; k++) {
      const s = slots[k]!;
      if (this.freeTop > 0 && this.free[this.freeTop - 1] === s) this.freeTop--;
      else if (s === this.watermarkValue) this.watermarkValue++;
      else throw new Error(`slot pool out of step: expected to take ${this.peek(0)}, got ${s}`);
      this.owner[s] = owners[k]!;
      this.dirty[s] = 1;
    }
  }

  /** A deleted rule's slot: keep it until its final totals are reported. */
  retire(slot: number, ruleId: bigint): void {
    this.owner[slot] = NONE;
    this.retired.set(slot, ruleId);
  }

  /** Final totals reported and acknowledged: the slot may be reused. */
  release(slot: number): void {
    if (!this.retired.delete(slot)) return;
    if (this.locked) this.deferredReleases.push(slot);
    else this.pushFree(slot);
  }

  private pushFree(slot: number): void {
    if (this.freeTop === this.free.length) {
      const b = new Int32Array(Math.min(this.capacity, this.free.length * 2));
      b.set(this.free);
      this.free = b;
    }
    this.free[this.freeTop++] = slot;
  }

  /** Releases the oldest retired slots when the free ones run out (their last counts are lost). */
  reclaim(n: number): number {
    let done = 0;
    for (const slot of [...this.retired.keys()]) {
      if (done >= n) break;
      this.release(slot);
      done++;
    }
    return done;
  }

  /** While a plan is being applied, releases wait so peek() stays valid. */
  lock(): void {
    this.locked = true;
  }

  unlock(): void {
    this.locked = false;
    for (const s of this.deferredReleases) this.pushFree(s);
    this.deferredReleases.length = 0;
  }
}
