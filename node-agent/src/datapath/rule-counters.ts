// The rule counters of a generation, in two maps (created, kept and replaced
// together):
//   fw_rule_cnt[row * slots + slot] = {packets, bytes} and the rule's event
//     budget on that row (fw_rule_row: the budget is the kernel's, read by
//     event-source.ts; zeroed here with the counter when a slot is reused),
//     one row per CPU the generation was made for (plain adds, each by its
//     own CPU);
//   fw_rule_xcnt[row * slots + slot] = {packets, bytes} only: an overflow row
//     for CPUs that came online later (atomic adds; only where some can), and
//     the base row, written only here: the totals carried over from the
//     previous generations (16 B a slot: it needs no event budget).
// A slot's total is the sum of its rows. Read, reset and carried over
// through a mapping of windows (MapRegion: mapped only while an operation
// runs).

import { constants as osConstants } from 'node:os';
import { LAYOUT } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { OpBatch } from './datapath.js';
import { DatapathError } from './errors.js';
import { MapRegion } from './libbpf.js';

const E = osConstants.errno;

/** Slots per window when reading or carrying over (512 KB per CPU row). */
const WINDOW = 32768;

/** The rows of a generation's counters. */
export interface CounterGeometry {
  /** Counter slots (per row). */
  readonly slots: number;
  /** CPUs 0..cpuRows-1 count in their own row. */
  readonly cpuRows: number;
  /** A row for CPUs numbered cpuRows or above. */
  readonly overflowRow: boolean;
}

/** Rows of fw_rule_cnt: one per CPU. */
export function cpuCounterRows(g: Omit<CounterGeometry, 'slots'>): number {
  return g.cpuRows;
}

/** Rows of fw_rule_xcnt: the overflow row if any, the base row. */
export function extraCounterRows(g: Omit<CounterGeometry, 'slots'>): number {
  return (g.overflowRow ? 1 : 0) + 1;
}

/** One map's rows: `rows` rows of `slots` elements of `size` bytes, the counter at `counter` in each. */
class CounterRows {
  readonly region: MapRegion;
  /** u64 words per element, and the packets and bytes words' places in it. */
  readonly w: number;
  readonly packets: number;
  readonly bytes: number;
  readonly v64: BigUint64Array;
  readonly v32: Uint32Array;

  constructor(
    map: BpfMap,
    readonly rows: number,
    readonly slots: number,
    readonly size: number,
    counter: number,
  ) {
    if (rows * slots > map.maxEntries) {
      throw new DatapathError(
        'open rule counters',
        map.name,
        E.EINVAL,
        `${rows} rows of ${slots} slots need ${rows * slots} entries, the map has ${map.maxEntries}`,
      );
    }
    this.w = size / 8;
    this.packets = (counter + LAYOUT.fw_counter.fields.packets) / 8;
    this.bytes = (counter + LAYOUT.fw_counter.fields.bytes) / 8;
    this.region = new MapRegion(map.fd, map.maxEntries * size, map.name);
    const bytes = rows * slots * size;
    this.v64 = new BigUint64Array(this.region.buffer, 0, bytes / 8);
    this.v32 = new Uint32Array(this.region.buffer, 0, bytes / 4);
  }

  /** Zeroes every row's element of `slot`, whole (one atomic store per word). */
  zero(slot: number): void {
    for (let r = 0; r < this.rows; r++) {
      const i = (r * this.slots + slot) * this.w;
      this.region.ensure(i * 8, this.size);
      for (let k = 0; k < this.w; k++) Atomics.store(this.v64, i + k, 0n);
    }
  }

  /** Adds the rows' counters of slots [first, first + m) into packets/bytes [0, m). */
  sumInto(first: number, m: number, packets: BigUint64Array, bytes: BigUint64Array): void {
    const view = this.v64;
    const v32 = this.v32;
    const W = this.w;
    for (let r = 0; r < this.rows; r++) {
      const base = (r * this.slots + first) * W;
      this.region.ensure(base * 8, m * this.size);
      for (let i = 0; i < m; i++) {
        // Most slots are zero in most rows: test the halves, no BigInt.
        const p = base + i * W + this.packets;
        const b = base + i * W + this.bytes;
        if (v32[p * 2] === 0 && v32[p * 2 + 1] === 0 && v32[b * 2] === 0 && v32[b * 2 + 1] === 0) continue;
        packets[i] = packets[i]! + view[p]!;
        bytes[i] = bytes[i]! + view[b]!;
      }
    }
  }
}

export class RuleCounters {
  readonly slots: number;
  readonly geometry: CounterGeometry;
  /** fw_rule_cnt: the CPU rows. */
  private readonly cpu: CounterRows;
  /** fw_rule_xcnt: the overflow row if any, the base row last. */
  private readonly extra: CounterRows;

  constructor(cnt: BpfMap, xcnt: BpfMap, geometry: CounterGeometry) {
    this.geometry = geometry;
    this.slots = geometry.slots;
    this.cpu = new CounterRows(cnt, cpuCounterRows(geometry), this.slots, LAYOUT.fw_rule_row.size, LAYOUT.fw_rule_row.fields.c);
    try {
      this.extra = new CounterRows(xcnt, extraCounterRows(geometry), this.slots, LAYOUT.fw_counter.size, 0);
    } catch (e) {
      this.cpu.region.close();
      throw e;
    }
  }

  /** Pages mapped now (0 at rest). */
  get mapped(): number {
    return this.cpu.region.mapped + this.extra.region.mapped;
  }

  /** Maps both maps whole (a batch of many resets). */
  mapAll(): void {
    this.cpu.region.mapAll();
    this.extra.region.mapAll();
  }

  /** Unmaps every window. */
  release(): void {
    this.cpu.region.release();
    this.extra.region.release();
  }

  close(): void {
    this.cpu.region.close();
    this.extra.region.close();
  }

  /** Zeroes the slots of counter.reset ops [i0, j0) in every row, event budget included (one atomic store per word). */
  reset(b: OpBatch, i0: number, j0: number): void {
    for (let k = i0; k < j0; k++) {
      const slot = b.slot[k]!;
      if (slot >= this.slots) continue; // past this generation's slots: nothing counted there
      this.cpu.zero(slot);
      this.extra.zero(slot);
    }
  }

  /**
   * Sets each CPU row's event mark of `slots` to its packet count (low 32
   * bits): a rule that turns from allow to deny keeps its counter, and its
   * first drop event must not carry the passes counted before.
   */
  markSlots(slots: readonly number[]): void {
    const c = this.cpu;
    const mark = (LAYOUT.fw_rule_row.fields.ev + LAYOUT.fw_ev_state.fields.mark) / 4;
    for (const slot of slots) {
      if (slot >= this.slots) continue;
      for (let r = 0; r < c.rows; r++) {
        const i = (r * this.slots + slot) * c.w;
        c.region.ensure(i * 8, c.size);
        Atomics.store(c.v32, i * 2 + mark, c.v32[(i + c.packets) * 2]!);
      }
    }
  }

  /**
   * Slots [first, first + n) summed over the rows into the caller's arrays
   * (n = the shorter array, cut at `upTo` slots; slots past this
   * generation's read as 0); returns n. Unmaps after.
   */
  readInto(first: number, packets: BigUint64Array, bytes: BigUint64Array, upTo: number, target: string): number {
    if (!Number.isInteger(first) || first < 0)
      throw new DatapathError('read rule counters', target, E.EINVAL, `first slot ${first} is not a slot number`);
    const n = Math.max(0, Math.min(packets.length, bytes.length, upTo - first));
    packets.fill(0n, 0, n);
    bytes.fill(0n, 0, n);
    const m = Math.max(0, Math.min(n, this.slots - first));
    if (m === 0) return n;
    try {
      this.sumInto(first, m, packets, bytes);
    } finally {
      this.release();
    }
    return n;
  }

  /** Adds rows' values of slots [first, first + m) into packets/bytes [0, m). */
  private sumInto(first: number, m: number, packets: BigUint64Array, bytes: BigUint64Array): void {
    this.cpu.sumInto(first, m, packets, bytes);
    this.extra.sumInto(first, m, packets, bytes);
  }

  /**
   * The next generation's base row = every total here (base included),
   * written whole (so doing it again gives the same result): only once no
   * program counts here any more (after the swap and a grace period), and
   * before anything reads or resets the next generation. Returns the
   * packets of slots past the next generation's that could not be carried
   * (0 by the shrink rule: nothing lives there).
   */
  carryInto(next: RuleCounters): bigint {
    let lost = 0n;
    const packets = new BigUint64Array(WINDOW);
    const bytes = new BigUint64Array(WINDOW);
    const base = next.extra;
    const dst = base.v64;
    const W = base.w;
    const baseRow = base.rows - 1;
    try {
      for (let first = 0; first < next.slots; first += WINDOW) {
        const m = Math.min(WINDOW, next.slots - first);
        packets.fill(0n);
        bytes.fill(0n);
        const have = Math.max(0, Math.min(m, this.slots - first));
        if (have > 0) this.sumInto(first, have, packets, bytes);
        const at = (baseRow * next.slots + first) * W;
        base.region.ensure(at * 8, m * base.size);
        for (let i = 0; i < m; i++) {
          Atomics.store(dst, at + i * W + base.packets, packets[i]!);
          Atomics.store(dst, at + i * W + base.bytes, bytes[i]!);
        }
        this.release();
        next.release();
      }
      for (let first = next.slots; first < this.slots; first += WINDOW) {
        const m = Math.min(WINDOW, this.slots - first);
        packets.fill(0n);
        bytes.fill(0n);
        this.sumInto(first, m, packets, bytes);
        for (let i = 0; i < m; i++) lost += packets[i]!;
        this.release();
      }
    } finally {
      this.release();
      next.release();
    }
    return lost;
  }

  /** The highest slot with a non-zero total, or -1. */
  highestNonZero(): number {
    const packets = new BigUint64Array(WINDOW);
    const bytes = new BigUint64Array(WINDOW);
    try {
      for (let first = Math.floor((this.slots - 1) / WINDOW) * WINDOW; first >= 0; first -= WINDOW) {
        const m = Math.min(WINDOW, this.slots - first);
        packets.fill(0n);
        bytes.fill(0n);
        this.sumInto(first, m, packets, bytes);
        this.release();
        for (let i = m - 1; i >= 0; i--) if (packets[i] !== 0n || bytes[i] !== 0n) return first + i;
      }
    } finally {
      this.release();
    }
    return -1;
  }
}
