// The IPv4 direct /24 index of one table (fw_in4_d24 / fw_eg4_d24, layout in
// bpf/include/fleetwall_abi.h): one u32 per /24 (a map value per /16) holding the longest entry of
// length <= 24 that covers it (counter slot, verdict, length + 1) and a
// LONGER bit, set while some entry of length > 24 lies inside that /24.
//
// The index is derived: the table's hash and trie keep every entry (what
// userspace reads back), and the owner calls paint/unpaint/addLonger/
// removeLonger after it has written them. Each u32 is written with one
// aligned store (the programs read each entry whole; no entry depends on
// another, so no ordering between stores is needed). After a write that
// failed half-way, or a crash, rebuild() recomputes the whole index from the
// entries and stores only the words that differ.
//
// The map is 64 MB. Mapped pages count in the process's RSS (a BPF array's
// pages are all inserted when mapped), so it is never mapped whole: words
// are reached through windows of at most 256 KB, and the region is released
// whenever more than 8 MB of it is mapped; the owner releases it after each
// apply and closes it.

import { constants as osConstants } from 'node:os';
import { FW_D24_BLOCKS, FW_D24_ENTRIES, FW_D24_LEN_SHIFT, FW_D24_LONGER, FW_D24_VERDICT_SHIFT, LAYOUT } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { DatapathError } from './errors.js';
import { MapRegion } from './libbpf.js';

const E = osConstants.errno;

/** Words per window (256 KB). */
const CHUNK = 1 << 16;
/** Pages of the index this process keeps mapped at most (8 MB). */
const MAX_MAPPED_PAGES = 2048;

/** An entry of length <= 24 as the index stores it (0: none). */
export function d24Word(len: number, slot: number, verdict: number): number {
  return (((len + 1) << FW_D24_LEN_SHIFT) | (verdict << FW_D24_VERDICT_SHIFT) | slot) >>> 0;
}

/** The length + 1 of the entry an index word holds (0: none). */
function lenOf(e: number): number {
  return (e >>> FW_D24_LEN_SHIFT) & 31;
}

/** Visits every entry of a table: its length, masked address (host order), counter slot and verdict. */
export type ForEachEntry4 = (fn: (len: number, a: number, slot: number, verdict: number) => void) => void;

export class Direct24 {
  readonly region: MapRegion;
  private readonly d: Uint32Array;
  /** Entries longer than /24 per /24 (saturating at 255: then LONGER stays), counted from the table on first use. */
  private longer: Uint8Array | null = null;
  private readonly forEachEntry: ForEachEntry4;

  /** forEachEntry: every entry of the table (hash, spill and trie), for the counts and rebuild(). */
  constructor(map: BpfMap, forEachEntry: ForEachEntry4) {
    // Values of 1024 bytes: the array has no padding, word i (the /24 a >> 8) sits at byte 4i.
    if (map.maxEntries !== FW_D24_BLOCKS || map.info.valueSize !== LAYOUT.fw_d24_block.size) {
      throw new DatapathError(
        'open table',
        map.name,
        E.EINVAL,
        `a direct /24 index holds ${FW_D24_BLOCKS} values of ${LAYOUT.fw_d24_block.size} bytes, this map ${map.maxEntries} of ${map.info.valueSize}`,
      );
    }
    this.region = new MapRegion(map.fd, FW_D24_ENTRIES * 4, map.name);
    this.d = new Uint32Array(this.region.buffer, 0, FW_D24_ENTRIES);
    this.forEachEntry = forEachEntry;
  }

  /**
   * Maps the aligned 256 KB windows holding words [first, first + n) (n <=
   * CHUNK), releasing the region first when much of it is mapped: bulk writes
   * are grouped by window, so one window serves all the writes in it.
   */
  private window(first: number, n: number): void {
    if (this.region.mapped > MAX_MAPPED_PAGES) this.region.release();
    this.region.ensureChunked(first * 4, n * 4, CHUNK * 4);
  }

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
   * <= len (paint) or exactly len (unpaint) gets w, keeping its LONGER bit.
   */
  private rewriteRange(len: number, a: number, w: number, paint: boolean): void {
    const d = this.d;
    const mine = len + 1;
    const end = (a >>> 8) + 2 ** (24 - len);
    for (let first = a >>> 8; first < end; first += CHUNK) {
      const last = Math.min(end, first + CHUNK);
      this.window(first, last - first);
      for (let i = first; i < last; i++) {
        const e = d[i]!;
        const l = lenOf(e);
        if (paint ? l <= mine : l === mine) d[i] = ((e & FW_D24_LONGER) | w) >>> 0;
      }
    }
  }

  /**
   * paint() of n entries (length, masked address, slot, verdict), grouped by
   * the window of their first /24 so that each window is mapped once. The
   * result does not depend on the order: a word ends up with the longest
   * entry over it, and two writes of one key (same length and address) keep
   * their order.
   */
  paintAll(n: number, len: Uint8Array, a: Uint32Array, slot: Uint32Array, verdict: Uint8Array): void {
    for (const k of byBlock(a, n)) this.paint(len[k]!, a[k]!, slot[k]!, verdict[k]!);
  }

  /** unpaint() of n deleted entries, grouped by window (the result does not depend on the order). */
  unpaintAll(n: number, len: Uint8Array, a: Uint32Array, cover: Uint32Array): void {
    for (const k of byBlock(a, n)) this.unpaint(len[k]!, a[k]!, cover[k]!);
  }

  /** addLonger() of each address, in address order. */
  addLongerAll(as: Uint32Array): void {
    for (const a of as.sort()) this.addLonger(a);
  }

  /** removeLonger() of each address, in address order. */
  removeLongerAll(as: Uint32Array): void {
    for (const a of as.sort()) this.removeLonger(a);
  }

  /** A new entry longer than /24 at a was written (after prepare()): its /24 gets LONGER. */
  addLonger(a: number): void {
    const c = this.longerCounts();
    const i = a >>> 8;
    if (c[i]! < 255) c[i]!++;
    this.window(i, 1);
    const e = this.d[i]!;
    if (!(e & FW_D24_LONGER)) this.d[i] = (e | FW_D24_LONGER) >>> 0;
  }

  /** An entry longer than /24 at a is gone (prepare() ran before it went): LONGER is cleared with the last one of its /24. */
  removeLonger(a: number): void {
    const c = this.longerCounts();
    const i = a >>> 8;
    // 255 means "at least 255": unknown, keep the bit (rebuild() or the next process counts again).
    if (c[i] === 0 || c[i] === 255 || --c[i]! !== 0) return;
    this.window(i, 1);
    this.d[i] = (this.d[i]! & ~FW_D24_LONGER) >>> 0;
  }

  /**
   * Counts the entries longer than /24 per /24 from the table, once per
   * process: call before the first write that adds or removes one (the
   * counts must not already include it).
   */
  prepare(): void {
    if (this.longer) return;
    const c = new Uint8Array(FW_D24_ENTRIES);
    this.forEachEntry((len, a) => {
      if (len > 24 && c[a >>> 8]! < 255) c[a >>> 8]!++;
    });
    this.longer = c;
  }

  private longerCounts(): Uint8Array {
    if (!this.longer) throw new Error('Direct24: prepare() before the first write of an entry longer than /24');
    return this.longer;
  }

  /**
   * Recomputes the whole index from the table's entries and stores the words
   * that differ (a program reading meanwhile sees each /24 old or new).
   */
  rebuild(): number {
    const want = new Uint32Array(FW_D24_ENTRIES);
    const c = new Uint8Array(FW_D24_ENTRIES);
    const short: Array<[number, number, number, number]> = [];
    this.forEachEntry((len, a, slot, verdict) => {
      if (len > 24) {
        if (c[a >>> 8]! < 255) c[a >>> 8]!++;
      } else {
        short.push([len, a, slot, verdict]);
      }
    });
    // Shortest first: a longer entry overwrites the part of a shorter one it covers.
    short.sort((x, y) => x[0] - y[0]);
    for (const [len, a, slot, verdict] of short) want.fill(d24Word(len, slot, verdict), a >>> 8, (a >>> 8) + 2 ** (24 - len));
    for (let i = 0; i < FW_D24_ENTRIES; i++) if (c[i]) want[i] = (want[i]! | FW_D24_LONGER) >>> 0;
    const d = this.d;
    let changed = 0;
    for (let first = 0; first < FW_D24_ENTRIES; first += CHUNK) {
      this.window(first, CHUNK);
      for (let i = first; i < first + CHUNK; i++) {
        if (d[i] !== want[i]) {
          d[i] = want[i]!;
          changed++;
        }
      }
    }
    this.longer = c;
    return changed;
  }
}

/** The indexes 0..n-1 grouped by the window (CHUNK words) of the /24 of a[i], in window order, stable (a counting sort). */
function byBlock(a: Uint32Array, n: number): Uint32Array {
  const windows = FW_D24_ENTRIES / CHUNK;
  const start = new Uint32Array(windows + 1);
  for (let k = 0; k < n; k++) start[((a[k]! >>> 8) / CHUNK + 1) | 0]!++;
  for (let c = 0; c < windows; c++) start[c + 1]! += start[c]!;
  const out = new Uint32Array(n);
  for (let k = 0; k < n; k++) out[start[((a[k]! >>> 8) / CHUNK) | 0]!++] = k;
  return out;
}
