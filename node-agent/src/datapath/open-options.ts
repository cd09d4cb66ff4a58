// What an open asks for (the maxima, K), checked, and the map sizes of a
// generation. Pure: reopened pins keep the maxima they were created with,
// and each generation's maps have the sizes its rules need (sizing.ts).

import { constants as osConstants } from 'node:os';
import { FW_IF_SLOTS, FW_MAX_HASH_LENS, FW_MAX_RULE_SLOTS, MAP, TABLES } from './abi.js';
import type { DatapathCapacity } from './datapath.js';
import { DatapathError } from './errors.js';
import { bucketsFor, spillSizeFor } from './fwtab-hash.js';
import { cpuCounterRows, extraCounterRows } from './rule-counters.js';
import type { GenSizes } from './sizing.js';

const E = osConstants.errno;

const DEFAULT_CAPACITY: DatapathCapacity = { prefixesPerTable: 1_048_576, counterSlots: 1_048_576 };
/** K: prefix lengths per table probed in the hash; the rest go to the trie (bpf/README.md, "Lookup structure, and why"). */
const DEFAULT_MAX_HASH_LENGTHS = 6;
/** fw_if_cntx entries at most (interfaces whose fw_if_cnt slot another one owns). */
const IF_CNTX_ENTRIES = 1024;
/** The event ring's bytes when none are asked for (~26k header-only events). */
export const DEFAULT_EVENT_RING_BYTES = 2 * 1024 * 1024;

/** The maxima and K asked for (defaults filled in), or EINVAL naming what is out of range. */
export function checkOptions(
  capacity: Partial<DatapathCapacity> | undefined,
  maxHashLengths: number | undefined,
  target: string,
): { capacity: DatapathCapacity; k: number } {
  const bad = (msg: string) => new DatapathError('open datapath', target, E.EINVAL, msg);
  const want: DatapathCapacity = { ...DEFAULT_CAPACITY, ...capacity };
  for (const [k, v] of Object.entries(want)) {
    if (!Number.isInteger(v) || v < 1 || v > 2 ** 31) throw bad(`capacity.${k} must be an integer in 1..2^31, got ${v}`);
  }
  const k = maxHashLengths ?? DEFAULT_MAX_HASH_LENGTHS;
  if (!Number.isInteger(k) || k < 0 || k > FW_MAX_HASH_LENS) throw bad(`maxHashLengths must be 0..${FW_MAX_HASH_LENS}, got ${k}`);
  if (want.counterSlots > FW_MAX_RULE_SLOTS)
    throw bad(`capacity.counterSlots must be at most ${FW_MAX_RULE_SLOTS}, got ${want.counterSlots}`);
  return { capacity: want, k };
}

/** A ring size the kernel takes (a power of two, at least a page), or EINVAL. */
export function checkRingBytes(n: number | undefined, target: string): number {
  const v = n ?? DEFAULT_EVENT_RING_BYTES;
  if (!Number.isInteger(v) || v < 4096 || v > 2 ** 30 || (v & (v - 1)) !== 0)
    throw new DatapathError('open datapath', target, E.EINVAL, `eventRingBytes must be a power of two in 4096..2^30, got ${v}`);
  return v;
}

/**
 * max_entries of every map: those of a generation at its sizes, the others
 * (created once: tries up to the maximum, their memory on demand; the
 * interface counters) at theirs.
 */
export function mapSizes(
  g: GenSizes,
  capacity: DatapathCapacity,
  possibleCpus: number,
  eventRingBytes = DEFAULT_EVENT_RING_BYTES,
): Map<string, number> {
  const sizes = new Map<string, number>();
  for (const t of TABLES) {
    sizes.set(t.tab, bucketsFor(t.family, g.prefixes[t.id]!));
    sizes.set(t.spill, spillSizeFor(g.prefixes[t.id]!));
    sizes.set(t.trie, capacity.prefixesPerTable);
    if (t.d24) sizes.set(t.d24, g.blocks[t.id]!);
  }
  sizes.set(MAP.RULE_CNT, cpuCounterRows(g) * g.slots);
  sizes.set(MAP.RULE_XCNT, extraCounterRows(g) * g.slots);
  sizes.set(MAP.JOURNAL, g.slots);
  sizes.set(MAP.IF_CNT, possibleCpus * FW_IF_SLOTS);
  sizes.set(MAP.IF_CNTX, IF_CNTX_ENTRIES);
  // The node's event budget per CPU and the default's (the rules' are in their counter rows).
  sizes.set(MAP.EV_CPU, possibleCpus);
  sizes.set(MAP.EVENTS, eventRingBytes);
  return sizes;
}
