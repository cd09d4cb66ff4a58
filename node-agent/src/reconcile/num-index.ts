// An index from non-negative integer keys (exact up to 2^53) to small
// non-negative integers, in typed arrays: open addressing, linear probing,
// backward-shift deletion, at most 80% full (any capacity: the hash is mapped
// onto the table by multiplication, not a mask). No JS object per entry, so a
// million entries cost about 15 MB and nothing for the garbage collector.

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

const MAX_LOAD = 0.8;

export class NumIndex {
  private keys: Float64Array;
  private vals: Int32Array;
  private cap: number;
  private count = 0;

  constructor(expected = 16) {
    const cap = NumIndex.capacityFor(expected);
    this.keys = new Float64Array(cap);
    this.vals = new Int32Array(cap).fill(EMPTY);
    this.cap = cap;
  }

  private static capacityFor(n: number): number {
    return Math.max(16, Math.ceil(n / (MAX_LOAD - 0.05)));
  }

  /** Home slot of a key: the 32-bit hash scaled onto [0, cap). */
  private home(key: number): number {
    return Math.floor((hashKey(key) * this.cap) / 4294967296);
  }

  get size(): number {
    return this.count;
  }

  /** The value for `key`, or -1. */
  get(key: number): number {
    const keys = this.keys;
    const vals = this.vals;
    const cap = this.cap;
    let i = this.home(key);
    for (;;) {
      const v = vals[i]!;
      if (v === EMPTY) return EMPTY;
      if (keys[i] === key) return v;
      if (++i === cap) i = 0;
    }
  }

  /** Sets key -> value (value >= 0). */
  set(key: number, value: number): void {
    if (this.count + 1 > this.cap * MAX_LOAD) this.grow(Math.ceil((this.count + 1) * 1.5));
    const keys = this.keys;
    const vals = this.vals;
    const cap = this.cap;
    let i = this.home(key);
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
      if (++i === cap) i = 0;
    }
  }

  /** Removes `key`; returns its value or -1. */
  delete(key: number): number {
    const keys = this.keys;
    const vals = this.vals;
    const cap = this.cap;
    let i = this.home(key);
    for (;;) {
      const v = vals[i]!;
      if (v === EMPTY) return EMPTY;
      if (keys[i] === key) break;
      if (++i === cap) i = 0;
    }
    const removed = vals[i]!;
    // Backward shift: pull later entries of the probe run into the hole.
    let hole = i;
    let j = i + 1 === cap ? 0 : i + 1;
    for (;;) {
      const v = vals[j]!;
      if (v === EMPTY) break;
      const home = this.home(keys[j]!);
      // Entry at j may move into the hole if its home is not in (hole, j] (cyclically).
      const dist = (j - home + cap) % cap;
      const holeDist = (j - hole + cap) % cap;
      if (dist >= holeDist) {
        keys[hole] = keys[j]!;
        vals[hole] = v;
        hole = j;
      }
      if (++j === cap) j = 0;
    }
    vals[hole] = EMPTY;
    this.count--;
    return removed;
  }

  /** Makes room for `n` entries without rehashing on the way. */
  reserve(n: number): void {
    if (n > this.cap * MAX_LOAD) this.grow(n);
  }

  clear(): void {
    this.vals.fill(EMPTY);
    this.count = 0;
  }

  private grow(n: number): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    const cap = NumIndex.capacityFor(Math.max(n, this.count));
    this.keys = new Float64Array(cap);
    this.vals = new Int32Array(cap).fill(EMPTY);
    this.cap = cap;
    this.count = 0;
    for (let i = 0; i < oldVals.length; i++) {
      const v = oldVals[i]!;
      if (v !== EMPTY) this.set(oldKeys[i]!, v);
    }
  }
}
