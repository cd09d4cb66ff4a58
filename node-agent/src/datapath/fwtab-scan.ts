// Reading every entry of a table's hash (its slots, then its spill hash)
// without an object per entry: for reads of the kernel state, the recount
// after a crash and the /24 index rebuild. Maps the whole table (the owner
// releases the windows). Addresses come out masked.

import { FW_B4_WORDS, FW_B6_SLOTS, FW_M6_LEN_MASK, FW_M6_VALID, LAYOUT, type TableIndex } from './abi.js';
import type { OpBatch } from './datapath.js';
import type { HashTable } from './fwtab.js';
import { entryAttrs, entrySlot, keyAddr4, keyLen } from './key-encoding.js';
import { B6_WORDS, M6_SLOT_HALF, S6_META, S6_WORDS, attrs4, attrs6, decodeKey4, slot4 } from './slot-words.js';

/** Stands for the IPv6 address of an IPv4 entry (never read). */
const NO_A6 = new Uint8Array(0);
/** scanSlots()'s IPv6 address (a copy per entry goes into the batch). */
const scan6 = new Uint8Array(16);

/**
 * Calls fn for every entry (slots, then spill), allocating nothing per
 * entry: IPv4 keys as a number (a4), IPv6 keys as 16 bytes at a6[off..]
 * (a view valid only during the call).
 */
export function forEachEntry(
  t: HashTable,
  fn: (len: number, a4: number, a6: Uint8Array, off: number, attrs: number, slot: number) => void,
): void {
  t.region.mapAll();
  const w32 = t.w32;
  if (t.family === 4) {
    const n = t.nbuckets * FW_B4_WORDS;
    for (let wi = 0; wi < n; wi++) {
      if (wi % FW_B4_WORDS === 0) continue; // the tag word
      const lo = w32[2 * wi]!;
      if (lo === 0) continue; // empty (a live slot's length code is never 0)
      const k = decodeKey4(lo, w32[2 * wi + 1]!);
      fn(k.len, k.a, NO_A6, 0, attrs4(lo), slot4(lo));
    }
  } else {
    const a6 = new Uint8Array(16);
    const a6w = new Uint32Array(a6.buffer);
    for (let b = 0; b < t.nbuckets; b++) {
      for (let s = 0; s < FW_B6_SLOTS; s++) {
        const wi = b * B6_WORDS + s * S6_WORDS;
        const meta = 2 * (wi + S6_META);
        const ml = w32[meta]!;
        if (!(ml & FW_M6_VALID)) continue;
        for (let j = 0; j < 4; j++) a6w[j] = w32[2 * wi + j]!; // little-endian words of the network bytes
        fn(ml & FW_M6_LEN_MASK, 0, a6, 0, attrs6(ml), w32[meta + M6_SLOT_HALF]!);
      }
    }
  }
  const spill = t.spill;
  const ks = spill.keySize;
  for (const { keys, values, count } of spill.lookupChunks()) {
    for (let i = 0; i < count; i++) {
      const len = keyLen(keys, i * ks);
      const v = i * spill.valueStride;
      if (t.family === 4) fn(len, keyAddr4(keys, i * ks), NO_A6, 0, entryAttrs(values, v), entrySlot(values, v));
      else fn(len, 0, keys, i * ks + LAYOUT.fw_key6.fields.addr, entryAttrs(values, v), entrySlot(values, v));
    }
  }
}

/**
 * Appends the slots' entries (not the spill hash's) from slot position
 * `pos` on to `out` as entry.upsert ops of `table`, until `out` is full;
 * returns the position to continue from, or -1 after the last bucket.
 */
export function scanSlots(t: HashTable, out: OpBatch, table: TableIndex, pos: number): number {
  t.region.mapAll();
  const w32 = t.w32;
  if (t.family === 4) {
    const n = t.nbuckets * FW_B4_WORDS;
    for (let wi = pos; wi < n; wi++) {
      if (wi % FW_B4_WORDS === 0) continue; // the tag word
      const lo = w32[2 * wi]!;
      if (lo === 0) continue; // empty (a live slot's length code is never 0)
      if (out.full) return wi;
      const k = decodeKey4(lo, w32[2 * wi + 1]!);
      out.entryUpsert(table, k.a, 0, k.len, attrs4(lo), slot4(lo));
    }
    return -1;
  }
  const a6w = new Uint32Array(scan6.buffer, scan6.byteOffset, 4);
  const n = t.nbuckets * FW_B6_SLOTS;
  for (let p = pos; p < n; p++) {
    const wi = Math.floor(p / FW_B6_SLOTS) * B6_WORDS + (p % FW_B6_SLOTS) * S6_WORDS;
    const meta = 2 * (wi + S6_META);
    const ml = w32[meta]!;
    if (!(ml & FW_M6_VALID)) continue;
    if (out.full) return p;
    for (let j = 0; j < 4; j++) a6w[j] = w32[2 * wi + j]!;
    out.entryUpsert(table, scan6, 0, ml & FW_M6_LEN_MASK, attrs6(ml), w32[meta + M6_SLOT_HALF]!);
  }
  return -1;
}
