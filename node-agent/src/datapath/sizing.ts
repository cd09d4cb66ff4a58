// How big a generation's maps are: pure. Every table's hash, each IPv4
// table's /24 block pool and the rule counters (with the journal) start small
// and follow what they hold, up to the configured maximum:
//   - grow when an apply would need more than they have: a hash to twice the
//     prefixes it will hold (a rebuild costs a pass over its entries, so
//     growth is geometric), the counters to twice the slots below 256k and
//     1.25x above (they cost 32 B per CPU row + 16 B of base row + 40 B of
//     journal per slot: the most memory per rule), a pool to 1.5x its blocks (1 KB each);
//   - shrink, after the applies that leave them at a quarter or less of
//     their size, to twice (hashes, pools) or 1.25x (counters) what they hold:
//     they then need to double before they grow again (hysteresis);
//   - a part that grows at all grows to at least GROWN_* (a swap costs
//     seconds of program loads under load), and grows ahead after an apply
//     that leaves it 3/4 full (growAhead);
//   - never below a reserve given at open (an operator who knows the size
//     ahead, or a test that aims at a fixed hash geometry).
// bpf/README.md, "Sizes that follow the rules", has the figures.

import { FW_D24_BLOCKS, TABLES } from './abi.js';

/** The sizes of a generation's maps. */
export interface GenSizes {
  /** Prefixes each table's hash holds (by table index). */
  readonly prefixes: readonly number[];
  /** Blocks of each IPv4 table's /24 index pool (0 for IPv6 tables). */
  readonly blocks: readonly number[];
  /** Rule counter slots, and journal entries. */
  readonly slots: number;
  /** CPUs with a row of their own in the rule counters. */
  readonly cpuRows: number;
  /** A row for CPUs that come online later (possible > online). */
  readonly overflowRow: boolean;
}

/** What the maps hold (or will hold), against which sizes are decided. */
export interface GenUsage {
  /** Prefixes per table. */
  readonly prefixes: readonly number[];
  /** Blocks in use per IPv4 table (0 for IPv6). */
  readonly blocks: readonly number[];
  /** The highest counter slot in use + 1. */
  readonly slots: number;
}

/** The configured maxima, and the sizes the maps keep at least (a reserve given at open; 0: none). */
export interface GenLimits {
  readonly prefixesPerTable: number;
  readonly counterSlots: number;
  readonly reservePrefixes?: number;
  readonly reserveSlots?: number;
}

export const MIN_PREFIXES = 1024;
export const MIN_SLOTS = 1024;
export const MIN_BLOCKS = 16;
/** Sizes are multiples of these. */
const STEP = 1024;
const BLOCK_STEP = 16;

const roundUp = (n: number, step: number): number => Math.ceil(n / step) * step;

/** The least prefixes a table's hash is sized for. */
function leastPrefixes(limits: GenLimits): number {
  return Math.min(limits.prefixesPerTable, Math.max(MIN_PREFIXES, roundUp(limits.reservePrefixes ?? 0, STEP)));
}

/** The least counter slots. */
function leastSlots(limits: GenLimits): number {
  return Math.min(limits.counterSlots, Math.max(MIN_SLOTS, roundUp(limits.reserveSlots ?? 0, STEP)));
}

/** The sizes of a new install: the least of everything. */
export function firstSizes(limits: GenLimits, cpuRows: number, overflowRow: boolean): GenSizes {
  return {
    prefixes: TABLES.map(() => leastPrefixes(limits)),
    blocks: TABLES.map((t) => (t.d24 ? MIN_BLOCKS : 0)),
    slots: leastSlots(limits),
    cpuRows,
    overflowRow,
  };
}

/**
 * A part that grows at all grows to at least these (~2 MB in all with two
 * CPUs): a swap costs its program loads, 0.5-3.7 s of the agent's event
 * loop measured at load 3-7 on 2 vCPUs, and the first growth of a node that
 * starts banning (issue 18: a flood of random sources, a /24 index block per
 * /16) took 4-5 of them from the least sizes. An idle agent keeps the least.
 */
const GROWN_PREFIXES = 8192;
const GROWN_SLOTS = 8192;
const GROWN_BLOCKS = 512;

function grownPrefixes(need: number, max: number): number {
  return Math.min(max, roundUp(Math.max(GROWN_PREFIXES, need * 2), STEP));
}

/** Slots below which the counters double when they grow (a swap costs ~0.1 s of program loads: few of them). */
const SLOTS_DOUBLE_BELOW = 262_144;

function grownSlots(need: number, max: number): number {
  return Math.min(max, roundUp(Math.max(GROWN_SLOTS, need * (need < SLOTS_DOUBLE_BELOW ? 2 : 1.25)), STEP));
}

function grownBlocks(need: number): number {
  return Math.min(FW_D24_BLOCKS, roundUp(Math.max(GROWN_BLOCKS, need * 1.5), BLOCK_STEP));
}

/**
 * The sizes for `need` (what an apply is about to make the maps hold, at its
 * peak): each part that would not fit grows; the others stay. Returns `cur`
 * itself when everything fits.
 */
export function grow(cur: GenSizes, need: GenUsage, limits: GenLimits): GenSizes {
  let changed = false;
  const least = leastPrefixes(limits);
  const prefixes = cur.prefixes.map((p, t) => {
    if (need.prefixes[t]! <= p && p >= least) return p;
    changed = true;
    return Math.max(p, least, grownPrefixes(need.prefixes[t]!, limits.prefixesPerTable));
  });
  const blocks = cur.blocks.map((b, t) => {
    if (need.blocks[t]! <= b) return b;
    changed = true;
    return grownBlocks(need.blocks[t]!);
  });
  let slots = cur.slots;
  if (need.slots > cur.slots || cur.slots < leastSlots(limits)) {
    changed = true;
    slots = Math.max(cur.slots, leastSlots(limits), grownSlots(need.slots, limits.counterSlots));
  }
  return changed ? { ...cur, prefixes, blocks, slots } : cur;
}

/** Past this share of its size after an apply, a part grows ahead (growAhead). */
export const AHEAD_SHARE = 0.75;
/** A part that grows ahead is sized for this many times what it holds: a third full, above shrink's quarter. */
const AHEAD_FACTOR = 3;

/**
 * The sizes after an apply left the maps holding `use`: when a part is more
 * than AHEAD_SHARE full, it - and every part more than half full, in the same
 * swap - grows now to AHEAD_FACTOR times what it holds (up to the maximum), so the applies that follow - a burst of local bans under a
 * flood of sources (issue 18) - find room without a swap first, and a
 * flood's growth takes few swaps (a third full after each). Returns `cur`
 * itself when nothing grows.
 */
export function growAhead(cur: GenSizes, use: GenUsage, limits: GenLimits): GenSizes {
  const grows = (size: number, n: number, max: number, share: number) => size < max && n > size * share;
  const due =
    cur.prefixes.some((p, t) => grows(p, use.prefixes[t]!, limits.prefixesPerTable, AHEAD_SHARE)) ||
    cur.blocks.some((b, t) => b > 0 && grows(b, use.blocks[t]!, FW_D24_BLOCKS, AHEAD_SHARE)) ||
    grows(cur.slots, use.slots, limits.counterSlots, AHEAD_SHARE);
  if (!due) return cur;
  // A swap is paid now: the parts more than half full grow in it too (a flood fills the counters and the hash together).
  const ahead = (size: number, n: number, max: number, step: number, floor: number): number =>
    grows(size, n, max, 0.5) ? Math.max(size, Math.min(max, roundUp(Math.max(floor, n * AHEAD_FACTOR), step))) : size;
  const prefixes = cur.prefixes.map((p, t) => ahead(p, use.prefixes[t]!, limits.prefixesPerTable, STEP, GROWN_PREFIXES));
  const blocks = cur.blocks.map((b, t) => (b === 0 ? 0 : ahead(b, use.blocks[t]!, FW_D24_BLOCKS, BLOCK_STEP, GROWN_BLOCKS)));
  const slots = ahead(cur.slots, use.slots, limits.counterSlots, STEP, GROWN_SLOTS);
  return { ...cur, prefixes, blocks, slots };
}

/**
 * A shrink to `to` (for `n` held): never to a size between the least and
 * the grown floor (growth would jump over it again): to the least once `n`
 * is a quarter of it or less, else to the floor.
 */
function shrinkTo(to: number, n: number, least: number, floor: number): number {
  if (to >= floor) return to;
  return n * 4 <= least ? least : Math.max(least, floor);
}

/**
 * The sizes after an apply left the maps holding `use`: each part at a
 * quarter or less of its size shrinks to twice (1.25x for the counters)
 * what it holds, never below the least size, nor between it and the grown
 * floor (GROWN_*: the floor, or the least once a quarter of it holds all).
 * Returns `cur` itself when nothing shrinks.
 */
export function shrink(cur: GenSizes, use: GenUsage, limits: GenLimits): GenSizes {
  let changed = false;
  const least = leastPrefixes(limits);
  const prefixes = cur.prefixes.map((p, t) => {
    const n = use.prefixes[t]!;
    if (p <= least || n * 4 > p) return p;
    const to = shrinkTo(Math.min(limits.prefixesPerTable, Math.max(least, roundUp(n * 2, STEP))), n, least, GROWN_PREFIXES);
    if (to >= p) return p;
    changed = true;
    return to;
  });
  const blocks = cur.blocks.map((b, t) => {
    const n = use.blocks[t]!;
    if (b <= MIN_BLOCKS || n * 4 > b) return b;
    const to = shrinkTo(Math.max(MIN_BLOCKS, roundUp(n * 2, BLOCK_STEP)), n, MIN_BLOCKS, GROWN_BLOCKS);
    if (to >= b) return b;
    changed = true;
    return to;
  });
  let slots = cur.slots;
  const fewest = leastSlots(limits);
  if (cur.slots > fewest && use.slots * 4 <= cur.slots) {
    const to = shrinkTo(Math.max(fewest, roundUp(use.slots * 1.25, STEP)), use.slots, fewest, GROWN_SLOTS);
    if (to < cur.slots) {
      changed = true;
      slots = to;
    }
  }
  return changed ? { ...cur, prefixes, blocks, slots } : cur;
}

/** True if two generations' maps have the same sizes. */
export function sameSizes(a: GenSizes, b: GenSizes): boolean {
  return (
    a.slots === b.slots &&
    a.cpuRows === b.cpuRows &&
    a.overflowRow === b.overflowRow &&
    a.prefixes.every((p, t) => p === b.prefixes[t]) &&
    a.blocks.every((x, t) => x === b.blocks[t])
  );
}
