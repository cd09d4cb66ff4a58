// The IPv4 direct /24 index of one table, in two levels (layout in
// bpf/include/fleetwall_abi.h):
//   - one u32 per /16 in the table's config (fw_table_cfg.d16): the /24 word
//     of every /24 of that /16 when no entry longer than /16 lies inside it,
//     else FW_D16_BLOCK | the index of its block;
//   - blocks of 256 /24 words (fw_in4_d24 / fw_eg4_d24, the table's pool),
//     one for each /16 that holds an entry longer than /16: the longest entry
//     of length <= 24 over each /24 (counter slot, verdict, length + 1) and a
//     LONGER bit while an entry of length > 24 lies inside that /24.
//
// The index is derived: the table's hash and trie keep every entry (what
// userspace reads back), and the owner calls the writes below after it has
// written the entries. Every word is written with one aligned store, in an
// order that keeps each lookup on the old or the new answer: a block is
// filled with its /16's answer before the /16 word points to it; a /16 word
// gets its answer back (every word of the block equal by then) before the
// block is freed, and a freed block is reused only after an RCU grace period
// (a program may still be reading it). After a write that failed half-way,
// or a crash, rebuild() recomputes the index from the entries and stores
// only the words that differ.
//
// The pool is sized to the blocks in use (the datapath grows and shrinks it
// by a generation swap: ensureRoom() says when). Its pages and the config's
// are mapped only while an operation runs (MapRegion); the owner releases
// them. The per-/16 and per-/24 counts of longer entries are counted from the
// table once per process (prepare()) and carried from one generation to the
// next (counts()). What the index should be, computed from the entries alone,
// is direct24-plan.ts's (pure).

import { constants as osConstants } from 'node:os';
import { FW_D16_BLOCK, FW_D16_INDEX_MASK, FW_D16_WORDS, FW_D24_BLOCKS, FW_D24_LEN_SHIFT, FW_D24_LONGER, LAYOUT } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { BW, computeIndex, countLonger, d24Word, type ForEachEntry4, type LongerCounts } from './direct24-plan.js';
import { DatapathError } from './errors.js';
import { MapRegion, rcuGracePeriod } from './libbpf.js';

const E = osConstants.errno;

/** Pool windows: 256 KB (256 blocks). */
const CHUNK = 1 << 16;
/** Writes in one call above which the whole pool is mapped first (at most 64 MB, ~6 MB for a million entries; released after the apply). */
const BULK = 256;

/** The length + 1 of the entry an index word holds (0: none). */
function lenOf(e: number): number {
  return (e >>> FW_D24_LEN_SHIFT) & 31;
}

/** Where the /16 words of a table live: a view of its config's mapping (d16 words from `first`), mapped by `ensure`. */
export interface D16Words {
  readonly words: Uint32Array;
  readonly first: number;
  ensure(): void;
}

export class Direct24 {
  private readonly region: MapRegion;
  /** Blocks the pool holds. */
  readonly capacity: number;
  private readonly pool: Uint32Array;
  private readonly d16: D16Words;
  /** Free blocks (reusable now), and blocks freed in this process (reusable after a grace period). */
  private free: number[] = [];
  private pending: number[] = [];
  private inUse = 0;
  private counts: LongerCounts | null;
  private readonly forEachEntry: ForEachEntry4;
  /** /16s whose last longer entry went in this batch: their blocks are released once the words are final. */
  private readonly emptied = new Set<number>();
  private readonly name: string;

  /**
   * pool: the table's fw_*4_d24 map; d16: its /16 words; forEachEntry: every
   * entry of the table (hash, spill and trie), for the counts and rebuild();
   * counts: those of the previous generation, if any.
   */
  constructor(pool: BpfMap, d16: D16Words, forEachEntry: ForEachEntry4, counts: LongerCounts | null = null) {
    if (pool.info.valueSize !== LAYOUT.fw_d24_block.size || pool.maxEntries > FW_D24_BLOCKS) {
      throw new DatapathError(
        'open table',
        pool.name,
        E.EINVAL,
        `a /24 block pool holds at most ${FW_D24_BLOCKS} values of ${LAYOUT.fw_d24_block.size} bytes, this map ${pool.maxEntries} of ${pool.info.valueSize}`,
      );
    }
    this.capacity = pool.maxEntries;
    this.name = pool.name;
    this.region = new MapRegion(pool.fd, this.capacity * BW * 4, pool.name);
    this.pool = new Uint32Array(this.region.buffer, 0, this.capacity * BW);
    this.d16 = d16;
    this.forEachEntry = forEachEntry;
    this.counts = counts;
    // Which blocks the /16 words use; the others are free.
    d16.ensure();
    const used = new Uint8Array(this.capacity);
    for (let x = 0; x < FW_D16_WORDS; x++) {
      const w = d16.words[d16.first + x]!;
      if (!(w & FW_D16_BLOCK)) continue;
      const b = w & FW_D16_INDEX_MASK;
      if (b >= this.capacity)
        throw new DatapathError(
          'open table',
          pool.name,
          E.EINVAL,
          `the /16 word of ${x >>> 8}.${x & 255} points to block ${b} of ${this.capacity}`,
        );
      used[b] = 1;
      this.inUse++;
    }
    for (let b = this.capacity - 1; b >= 0; b--) if (!used[b]) this.free.push(b);
  }

  close(): void {
    this.region.close();
  }

  /** Unmaps every window of the pool (the owner's release after an operation). */
  release(): void {
    this.region.release();
  }

  /** Pages of the pool mapped now. */
  get mappedPages(): number {
    return this.region.mapped;
  }

  /** Blocks in use (by /16s that hold longer entries). */
  get blocksInUse(): number {
    return this.inUse;
  }

  /** The counts, for the next generation's index (null until prepare()). */
  longerCounts(): LongerCounts | null {
    return this.counts;
  }

  /**
   * True if the pool has room for `more` new blocks, counting the blocks
   * freed in this process (after a grace period, which this waits for when
   * it needs them).
   */
  ensureRoom(more: number): boolean {
    if (this.free.length >= more) return true;
    if (this.free.length + this.pending.length < more) return false;
    this.grace();
    return true;
  }

  /** /16s (of the addresses of entries longer than /16) that have no block yet, among `as` (masked addresses). */
  newBlocksFor(as: Iterable<number>): number {
    this.d16.ensure();
    const seen = new Set<number>();
    for (const a of as) {
      const x = a >>> 16;
      if (seen.has(x)) continue;
      seen.add(x);
    }
    let n = 0;
    for (const x of seen) if (!(this.top(x) & FW_D16_BLOCK)) n++;
    return n;
  }

  // ---------------------------------------------------------------- words

  private top(x: number): number {
    return this.d16.words[this.d16.first + x]!;
  }

  private setTop(x: number, w: number): void {
    Atomics.store(this.d16.words, this.d16.first + x, w | 0);
  }

  /** Maps the pool's window holding block b. */
  private block(b: number): number {
    this.region.ensureChunked(b * BW * 4, BW * 4, CHUNK * 4);
    return b * BW;
  }

  /** The /24 word of the /24 `i` (a >> 8) as the programs read it. */
  word(i: number): number {
    this.d16.ensure();
    const t = this.top(i >>> 8);
    if (!(t & FW_D16_BLOCK)) return t;
    return this.pool[this.block(t & FW_D16_INDEX_MASK) + (i & 255)]!;
  }

  // ---------------------------------------------------------------- writes

  /**
   * An entry of length len <= 24 at a (masked, host order) was written: it
   * takes every /24 of its range that no longer entry of length <= 24 holds.
   */
  paint(len: number, a: number, slot: number, verdict: number): void {
    this.rewriteRange(len, a, d24Word(len, slot, verdict), true);
  }

  /**
   * The entry of length len <= 24 at a is gone: its /24s go to `cover`, the
   * index word of the longest remaining entry shorter than len that covers
   * it (0: none). Only this entry can hold a /24 of its range at its length.
   */
  unpaint(len: number, a: number, cover: number): void {
    this.rewriteRange(len, a, cover, false);
  }

  /**
   * Every /24 in the range of (len, a) whose word holds an entry of length
   * <= len (paint) or exactly len (unpaint) gets w, keeping its LONGER bit:
   * the /16 words of the range that have no block, the block words of the
   * others.
   */
  private rewriteRange(len: number, a: number, w: number, paint: boolean): void {
    this.d16.ensure();
    const mine = len + 1;
    const x0 = a >>> 16;
    if (len > 16) {
      // Inside one /16 (the common case: /17../24 entries): its block's words.
      const t = this.top(x0);
      if (!(t & FW_D16_BLOCK)) {
        // Unpainting an absent prefix: no word there holds its length (only it could). Painting: a bug.
        if (!paint) return;
        throw new DatapathError('write /24 index', `${x0 >>> 8}.${x0 & 255}.0.0/16`, E.EINVAL, `an entry of /${len} there but no block`);
      }
      const p = this.pool;
      const first = this.block(t & FW_D16_INDEX_MASK) + ((a >>> 8) & 255);
      const end = first + 2 ** (24 - len);
      for (let i = first; i < end; i++) {
        const e = p[i]!;
        const l = (e >>> FW_D24_LEN_SHIFT) & 31;
        if (paint ? l <= mine : l === mine) p[i] = ((e & FW_D24_LONGER) | w) >>> 0;
      }
      return;
    }
    const take = (e: number) => (paint ? lenOf(e) <= mine : lenOf(e) === mine);
    const nx = len >= 16 ? 1 : 2 ** (16 - len);
    const i0 = len >= 16 ? (a >>> 8) & 255 : 0;
    const ni = len >= 16 ? 2 ** (24 - len) : BW;
    for (let x = x0; x < x0 + nx; x++) {
      const t = this.top(x);
      if (!(t & FW_D16_BLOCK)) {
        if (len > 16) {
          // Unpainting an absent prefix: no word there holds its length (only it could). Painting: a bug.
          if (!paint) continue;
          throw new DatapathError('write /24 index', `${x >>> 8}.${x & 255}.0.0/16`, E.EINVAL, `an entry of /${len} there but no block`);
        }
        if (take(t)) this.setTop(x, w);
        continue;
      }
      const base = this.block(t & FW_D16_INDEX_MASK);
      const p = this.pool;
      for (let i = base + i0; i < base + i0 + ni; i++) {
        const e = p[i]!;
        if (take(e)) p[i] = ((e & FW_D24_LONGER) | w) >>> 0;
      }
    }
  }

  /** paint() of n entries, grouped by /16 (the result does not depend on the order). */
  paintAll(n: number, len: Uint8Array, a: Uint32Array, slot: Uint32Array, verdict: Uint8Array): void {
    if (n > BULK) this.region.mapAll();
    for (const k of byBlock(a, n)) this.paint(len[k]!, a[k]!, slot[k]!, verdict[k]!);
  }

  /** unpaint() of n deleted entries, grouped by /16 (the result does not depend on the order). */
  unpaintAll(n: number, len: Uint8Array, a: Uint32Array, cover: Uint32Array): void {
    if (n > BULK) this.region.mapAll();
    for (const k of byBlock(a, n)) this.unpaint(len[k]!, a[k]!, cover[k]!);
  }

  /**
   * New entries longer than /16 (lengths, masked addresses) were written
   * (after prepare()): their /16s get blocks, their /24s LONGER if longer
   * than /24. Before the words of entries of /17../24 are painted.
   */
  addDeepAll(lens: Uint8Array, as: Uint32Array, n: number): void {
    if (n === 0) return;
    const c = this.prepared();
    this.d16.ensure();
    if (n > BULK) this.region.mapAll();
    for (const k of byBlock(as, n)) {
      const a = as[k]!;
      const x = a >>> 16;
      if (c.deep[x]!++ === 0) this.emptied.delete(x);
      this.ensureBlock(x);
      if (lens[k]! > 24) {
        let per = c.longer.get(x);
        if (!per) c.longer.set(x, (per = new Uint8Array(256)));
        const i = (a >>> 8) & 255;
        if (per[i]! < 255) per[i]!++;
        const at = this.block(this.top(x) & FW_D16_INDEX_MASK) + i;
        const e = this.pool[at]!;
        if (!(e & FW_D24_LONGER)) this.pool[at] = (e | FW_D24_LONGER) >>> 0;
      }
    }
  }

  /**
   * Entries longer than /16 are gone (prepare() ran before they went): LONGER
   * is cleared with the last one of a /24; a /16 left with none has its
   * block released by releaseEmptied(), once its words are final.
   */
  removeDeepAll(lens: Uint8Array, as: Uint32Array, n: number): void {
    if (n === 0) return;
    const c = this.prepared();
    this.d16.ensure();
    for (const k of byBlock(as, n)) {
      const a = as[k]!;
      const x = a >>> 16;
      if (c.deep[x] === 0) continue;
      if (--c.deep[x]! === 0) this.emptied.add(x);
      if (lens[k]! <= 24) continue;
      const per = c.longer.get(x);
      const i = (a >>> 8) & 255;
      // 255 means "at least 255": unknown, keep the bit (rebuild() or the next process counts again).
      if (!per || per[i] === 0 || per[i] === 255 || --per[i]! !== 0) continue;
      const t = this.top(x);
      if (!(t & FW_D16_BLOCK)) continue;
      const at = this.block(t & FW_D16_INDEX_MASK) + i;
      this.pool[at] = (this.pool[at]! & ~FW_D24_LONGER) >>> 0;
    }
  }

  /**
   * Gives the /16s whose last longer entry went their answer back and frees
   * their blocks (reusable after a grace period). Call after the batch's
   * unpaints: every word of such a block is then its /16's answer.
   */
  releaseEmptied(): void {
    if (this.emptied.size === 0) return;
    const c = this.counts;
    this.d16.ensure();
    for (const x of this.emptied) {
      if (c && c.deep[x] !== 0) continue;
      c?.longer.delete(x);
      const t = this.top(x);
      if (!(t & FW_D16_BLOCK)) continue;
      const b = t & FW_D16_INDEX_MASK;
      const base = this.block(b);
      const w = this.pool[base]!;
      let same = !(w & FW_D24_LONGER);
      for (let i = 1; same && i < BW; i++) if (this.pool[base + i] !== w) same = false;
      if (!same) continue; // not expected; the block stays (rebuild() settles it)
      this.setTop(x, w);
      this.pending.push(b);
      this.inUse--;
    }
    this.emptied.clear();
  }

  /** /16 x gets a block if it has none: filled with its answer, then pointed to. */
  private ensureBlock(x: number): void {
    const t = this.top(x);
    if (t & FW_D16_BLOCK) return;
    if (this.free.length === 0) {
      if (this.pending.length === 0)
        throw new DatapathError('write /24 index', this.name, E.ENOSPC, `all ${this.capacity} blocks are in use`);
      this.grace();
    }
    const b = this.free.pop()!;
    const base = this.block(b);
    this.pool.fill(t, base, base + BW);
    this.setTop(x, (FW_D16_BLOCK | b) >>> 0);
    this.inUse++;
  }

  /** Waits for a grace period: blocks freed before it are unread by any program after it. */
  private grace(): void {
    if (this.pending.length === 0) return;
    rcuGracePeriod();
    this.free.push(...this.pending);
    this.pending = [];
  }

  /**
   * Counts the entries longer than /16 per /16 and longer than /24 per /24
   * from the table, once per process: call before the first write that adds
   * or removes one (the counts must not already include it).
   */
  prepare(): void {
    if (!this.counts) this.counts = countLonger(this.forEachEntry);
  }

  private prepared(): LongerCounts {
    if (!this.counts) throw new Error('Direct24: prepare() before the first write of an entry longer than /16');
    return this.counts;
  }

  /**
   * Recomputes the whole index from the table's entries and stores the words
   * that differ (a program reading meanwhile sees each /24 old or new):
   * blocks for the /16s that need one (filled before they are pointed to),
   * answers back for the others (their blocks freed). Returns the words
   * changed.
   */
  rebuild(): number {
    const want = computeIndex(this.forEachEntry);
    this.counts = want.counts;
    this.emptied.clear();
    this.d16.ensure();
    let changed = 0;
    // /16s that no longer need a block first: their blocks can serve the others.
    for (let x = 0; x < FW_D16_WORDS; x++) {
      if (want.blocks.has(x)) continue;
      const t = this.top(x);
      if (t !== want.top[x]) {
        this.setTop(x, want.top[x]!);
        changed++;
        if (t & FW_D16_BLOCK) {
          this.pending.push(t & FW_D16_INDEX_MASK);
          this.inUse--;
        }
      }
    }
    for (const [x, words] of want.blocks) {
      this.ensureBlock(x);
      const base = this.block(this.top(x) & FW_D16_INDEX_MASK);
      for (let i = 0; i < BW; i++) {
        if (this.pool[base + i] !== words[i]) {
          this.pool[base + i] = words[i]!;
          changed++;
        }
      }
    }
    return changed;
  }

  /**
   * Writes this index, compacted, into another generation's pool and /16
   * words (not yet read by any program): blocks renumbered from 0.
   */
  copyTo(pool: Uint32Array, d16: Uint32Array, first: number): void {
    this.d16.ensure();
    let next = 0;
    for (let x = 0; x < FW_D16_WORDS; x++) {
      const t = this.top(x);
      if (!(t & FW_D16_BLOCK)) {
        d16[first + x] = t;
        continue;
      }
      const base = this.block(t & FW_D16_INDEX_MASK);
      pool.set(this.pool.subarray(base, base + BW), next * BW);
      d16[first + x] = (FW_D16_BLOCK | next) >>> 0;
      next++;
    }
  }
}

/** The indexes 0..n-1 grouped by the /16 of a[i] (the windows follow), stable (a counting sort over the top 8 bits). */
function byBlock(a: Uint32Array, n: number): Uint32Array {
  const start = new Uint32Array(257);
  for (let k = 0; k < n; k++) start[(a[k]! >>> 24) + 1]!++;
  for (let c = 0; c < 256; c++) start[c + 1]! += start[c]!;
  const out = new Uint32Array(n);
  for (let k = 0; k < n; k++) out[start[a[k]! >>> 24]!++] = k;
  return out;
}
