// The per-CPU rule counters: fw_rule_cnt[cpu * slots + slot] = {packets,
// bytes}, written by the programs, read and reset here through a mapping of
// windows (MapRegion: mapped only while a read or a reset runs).

import { constants as osConstants } from 'node:os';
import { LAYOUT } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { OpBatch } from './datapath.js';
import { DatapathError } from './errors.js';
import { MapRegion } from './libbpf.js';

const E = osConstants.errno;

/** u64 words per counter, and the two words' places. */
const W = LAYOUT.fw_counter.size / 8;
const PACKETS = LAYOUT.fw_counter.fields.packets / 8;
const BYTES = LAYOUT.fw_counter.fields.bytes / 8;

export class RuleCounters {
  readonly region: MapRegion;
  /** Counter slots per CPU. */
  readonly slots: number;
  private readonly v64: BigUint64Array;
  private readonly v32: Uint32Array;

  constructor(
    map: BpfMap,
    private readonly ncpu: number,
  ) {
    this.slots = Math.floor(map.maxEntries / ncpu);
    this.region = new MapRegion(map.fd, map.maxEntries * LAYOUT.fw_counter.size, map.name);
    const bytes = ncpu * this.slots * LAYOUT.fw_counter.size;
    this.v64 = new BigUint64Array(this.region.buffer, 0, bytes / 8);
    this.v32 = new Uint32Array(this.region.buffer, 0, bytes / 4);
  }

  close(): void {
    this.region.close();
  }

  /** Zeroes the slots of counter.reset ops [i0, j0) on every CPU (one atomic store per word). */
  reset(b: OpBatch, i0: number, j0: number): void {
    const view = this.v64;
    const region = this.region;
    for (let k = i0; k < j0; k++) {
      const slot = b.slot[k]!;
      for (let c = 0; c < this.ncpu; c++) {
        const i = (c * this.slots + slot) * W;
        region.ensure(i * 8, LAYOUT.fw_counter.size);
        Atomics.store(view, i + PACKETS, 0n);
        Atomics.store(view, i + BYTES, 0n);
      }
    }
  }

  /**
   * Slots [first, first + n) summed over the CPUs into the caller's arrays
   * (n = the shorter array, cut at `upTo` slots); returns n. Unmaps after.
   */
  readInto(first: number, packets: BigUint64Array, bytes: BigUint64Array, upTo: number, target: string): number {
    if (!Number.isInteger(first) || first < 0)
      throw new DatapathError('read rule counters', target, E.EINVAL, `first slot ${first} is not a slot number`);
    const n = Math.max(0, Math.min(packets.length, bytes.length, upTo - first));
    packets.fill(0n, 0, n);
    bytes.fill(0n, 0, n);
    if (n === 0) return 0;
    const view = this.v64;
    const v32 = this.v32;
    try {
      for (let c = 0; c < this.ncpu; c++) {
        const base = (c * this.slots + first) * W;
        this.region.ensure(base * 8, n * LAYOUT.fw_counter.size);
        for (let i = 0; i < n; i++) {
          // Most slots are zero on most CPUs: test the halves, no BigInt.
          const w = (base + i * W + PACKETS) * 2;
          if (v32[w] === 0 && v32[w + 1] === 0) continue;
          packets[i] = packets[i]! + view[base + i * W + PACKETS]!;
          bytes[i] = bytes[i]! + view[base + i * W + BYTES]!;
        }
      }
    } finally {
      this.region.release();
    }
    return n;
  }
}
