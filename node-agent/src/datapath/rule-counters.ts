// The rule counters of a generation: fw_rule_cnt[row * slots + slot] =
// {packets, bytes} and the rule's event budget on that row (fw_rule_row: the
// budget is the kernel's, read by event-source.ts; zeroed here with the
// counter when a slot is reused), rows: one per CPU the generation was made for (plain
// adds, each by its own CPU), an overflow row for CPUs that came online later
// (atomic adds; only where some can), and the base row, written only here:
// the totals carried over from the previous generations. A slot's total is
// the sum of its rows. Read, reset and carried over through a mapping of
// windows (MapRegion: mapped only while an operation runs).

import { constants as osConstants } from 'node:os';
import { LAYOUT } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { OpBatch } from './datapath.js';
import { DatapathError } from './errors.js';
import { MapRegion } from './libbpf.js';

const E = osConstants.errno;

/** A counter row (fw_rule_row: counter, then event budget), its u64 words, and the counter words' places. */
const ROW = LAYOUT.fw_rule_row.size;
const W = ROW / 8;
const PACKETS = (LAYOUT.fw_rule_row.fields.c + LAYOUT.fw_counter.fields.packets) / 8;
const BYTES = (LAYOUT.fw_rule_row.fields.c + LAYOUT.fw_counter.fields.bytes) / 8;
/** Slots per window when reading or carrying over (512 KB per row). */
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

/** Rows of fw_rule_cnt: the CPU rows, the overflow row if any, the base row. */
export function counterRows(g: Omit<CounterGeometry, 'slots'>): number {
  return g.cpuRows + (g.overflowRow ? 1 : 0) + 1;
}

export class RuleCounters {
  readonly region: MapRegion;
  readonly slots: number;
  readonly geometry: CounterGeometry;
  /** Rows, the base row last. */
  private readonly rows: number;
  private readonly v64: BigUint64Array;
  private readonly v32: Uint32Array;

  constructor(map: BpfMap, geometry: CounterGeometry) {
    this.geometry = geometry;
    this.slots = geometry.slots;
    this.rows = counterRows(geometry);
    if (this.rows * this.slots > map.maxEntries) {
      throw new DatapathError(
        'open rule counters',
        map.name,
        E.EINVAL,
        `${this.rows} rows of ${this.slots} slots need ${this.rows * this.slots} entries, the map has ${map.maxEntries}`,
      );
    }
    this.region = new MapRegion(map.fd, map.maxEntries * ROW, map.name);
    const bytes = this.rows * this.slots * ROW;
    this.v64 = new BigUint64Array(this.region.buffer, 0, bytes / 8);
    this.v32 = new Uint32Array(this.region.buffer, 0, bytes / 4);
  }

  close(): void {
    this.region.close();
  }

  /** Zeroes the slots of counter.reset ops [i0, j0) in every row, event budget included (one atomic store per word). */
  reset(b: OpBatch, i0: number, j0: number): void {
    const view = this.v64;
    const region = this.region;
    for (let k = i0; k < j0; k++) {
      const slot = b.slot[k]!;
      if (slot >= this.slots) continue; // past this generation's slots: nothing counted there
      for (let r = 0; r < this.rows; r++) {
        const i = (r * this.slots + slot) * W;
        region.ensure(i * 8, ROW);
        for (let k = 0; k < W; k++) Atomics.store(view, i + k, 0n);
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
      this.region.release();
    }
    return n;
  }

  /** Adds rows' values of slots [first, first + m) into packets/bytes [0, m). */
  private sumInto(first: number, m: number, packets: BigUint64Array, bytes: BigUint64Array): void {
    const view = this.v64;
    const v32 = this.v32;
    for (let r = 0; r < this.rows; r++) {
      const base = (r * this.slots + first) * W;
      this.region.ensure(base * 8, m * ROW);
      for (let i = 0; i < m; i++) {
        // Most slots are zero in most rows: test the halves, no BigInt.
        const w = (base + i * W + PACKETS) * 2;
        const wb = (base + i * W + BYTES) * 2;
        if (v32[w] === 0 && v32[w + 1] === 0 && v32[wb] === 0 && v32[wb + 1] === 0) continue;
        packets[i] = packets[i]! + view[base + i * W + PACKETS]!;
        bytes[i] = bytes[i]! + view[base + i * W + BYTES]!;
      }
    }
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
    const dst = next.v64;
    const baseRow = next.rows - 1;
    try {
      for (let first = 0; first < next.slots; first += WINDOW) {
        const m = Math.min(WINDOW, next.slots - first);
        packets.fill(0n);
        bytes.fill(0n);
        const have = Math.max(0, Math.min(m, this.slots - first));
        if (have > 0) this.sumInto(first, have, packets, bytes);
        const at = (baseRow * next.slots + first) * W;
        next.region.ensure(at * 8, m * ROW);
        for (let i = 0; i < m; i++) {
          Atomics.store(dst, at + i * W + PACKETS, packets[i]!);
          Atomics.store(dst, at + i * W + BYTES, bytes[i]!);
        }
        this.region.release();
        next.region.release();
      }
      for (let first = next.slots; first < this.slots; first += WINDOW) {
        const m = Math.min(WINDOW, this.slots - first);
        packets.fill(0n);
        bytes.fill(0n);
        this.sumInto(first, m, packets, bytes);
        for (let i = 0; i < m; i++) lost += packets[i]!;
        this.region.release();
      }
    } finally {
      this.region.release();
      next.region.release();
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
        this.region.release();
        for (let i = m - 1; i >= 0; i--) if (packets[i] !== 0n || bytes[i] !== 0n) return first + i;
      }
    } finally {
      this.region.release();
    }
    return -1;
  }
}
