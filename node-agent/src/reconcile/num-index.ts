// An index from non-negative integer keys (exact up to 2^53) to small
// non-negative integers, in typed arrays: open addressing, linear probing,
// backward-shift deletion. No JS object per entry, so a million entries cost
// about 24 MB and nothing for the garbage collector to trace.

const EMPTY = -1;

function hashKey(key: number): number {
  const lo = key >>> 0;
  const hi = (key / 4294967296) >>> 0;
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class NumIndex {
  private keys: Float64Array;
  private vals: Int32Array;
  private mask: number;
  private count = 0;

  constructor(expected = 16) {
    const cap = NumIndex.capacityFor(expected);
    this.keys = new Float64Array(cap);
    this.vals = new Int32Array(cap).fill(EMPTY);
    this.mask = cap - 1;
  }

  private static capacityFor(n: number): number {
    let cap = 16;
    while (cap * 0.6 < n) cap *= 2;
    return cap;
  }

  get size(): number {
    return this.count;
  }

  /** The value for `key`, or -1. */
  get(key: number): number {
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = hashKey(key) & mask;
    for (;;) {
      const v = vals[i]!;
      if (v === EMPTY) return EMPTY;
      if (keys[i] === key) return v;
      i = (i + 1) & mask;
    }
  }

  /** Sets key -> value (value >= 0). */
  set(key: number, value: number): void {
    if ((this.count + 1) > (this.mask + 1) * 0.7) this.grow(this.count + 1);
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = hashKey(key) & mask;
    for (;;) {
      const v = vals[i]!;
      if (v === EMPTY) {
        keys[i] = key;
        vals[i] = value;
        this.count++;
        return;
      }
      if (keys[i] === key) {
        vals[i] = value;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  /** Removes `key`; returns its value or -1. */
  delete(key: number): number {
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = hashKey(key) & mask;
    for (;;) {
      const v = vals[i]!;
      if (v === EMPTY) return EMPTY;
      if (keys[i] === key) break;
      i = (i + 1) & mask;
    }
    const removed = vals[i]!;
    // Backward shift: pull later entries of the probe run into the hole.
    let hole = i;
    let j = (i + 1) & mask;
    for (;;) {
      const v = vals[j]!;
      if (v === EMPTY) break;
      const home = hashKey(keys[j]!) & mask;
      // Entry at j may move into the hole if its home is not in (hole, j].
      const dist = (j - home) & mask;
      const holeDist = (j - hole) & mask;
      if (dist >= holeDist) {
        keys[hole] = keys[j]!;
        vals[hole] = v;
        hole = j;
      }
      j = (j + 1) & mask;
    }
    vals[hole] = EMPTY;
    this.count--;
    return removed;
  }

  /** Makes room for `n` entries without rehashing on the way. */
  reserve(n: number): void {
    if (n > (this.mask + 1) * 0.7) this.grow(n);
  }

  clear(): void {
    this.vals.fill(EMPTY);
    this.count = 0;
  }

  private grow(n: number): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    const cap = NumIndex.capacityFor(Math.max(n, this.count * 2));
    this.keys = new Float64Array(cap);
    this.vals = new Int32Array(cap).fill(EMPTY);
    this.mask = cap - 1;
    this.count = 0;
    for (let i = 0; i < oldVals.length; i++) {
      const v = oldVals[i]!;
      if (v !== EMPTY) this.set(oldKeys[i]!, v);
    }
  }
}
