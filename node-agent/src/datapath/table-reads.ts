// What is read of one table (prefix-table.ts) from its three maps - the
// bucketed hash of the lengths its config publishes, that hash's spill hash,
// the LPM trie of the other lengths - without writing any of them: whether
// an op's prefix is there, the entry stored for exactly a prefix, where each
// length lives, every entry as entry.upsert ops (scan), the highest counter
// slot named, every IPv4 entry for the /24 index, the /24 word of the
// longest entry covering a prefix (an unpaint's answer), and the entries per
// length counted from the maps (the recount after a crash).

import { maskBytes, type Prefix } from '../../../common/src/cidr.js';
import { LAYOUT, type TableCfg, type TableDesc } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { ATTR_ALLOW, ATTR_MONITOR, type KernelEntry, type OpBatch } from './datapath.js';
import { d24Word } from './direct24-plan.js';
import type { HashTable, TabValue } from './fwtab.js';
import { forEachEntry, scanSlots } from './fwtab-scan.js';
import { entryAttrs, entryLen, entrySlot, keyAddr4, keyLen, maskedAddr4, writeKeyOp } from './key-encoding.js';
import { slotVerdict } from './slot-words.js';
import { activeSet } from './table-config.js';

/** Where each populated prefix length of a table lives (tests, the bench, debugging). */
export interface TableLayout {
  readonly direction: KernelEntry['direction'];
  readonly family: 4 | 6;
  readonly hashLens: number[];
  readonly trieLens: number[];
  readonly useTrie: boolean;
}

/** What the reads need of a table: its maps, its entries per length, the config it was last published with. */
export interface TableView {
  readonly desc: TableDesc;
  readonly tab: HashTable;
  readonly spill: BpfMap;
  readonly trie: BpfMap;
  readonly counts: Uint32Array;
  readonly config: TableCfg;
}

/** coverWord4()'s trie key (one thread: reused). */
const coverKey = Buffer.alloc(LAYOUT.fw_key4.size);

function inHash(t: TableView, len: number): boolean {
  return activeSet(t.config).hashLens.includes(len);
}

/**
 * The trie's value for exactly this key, or null. A trie lookup is a
 * longest-prefix match: it also answers with a shorter entry that covers the
 * key (its value carries its own length).
 */
function trieExact(trie: BpfMap, key: Buffer): Buffer | null {
  const v = trie.lookup(key);
  return v && entryLen(v, 0) === keyLen(key, 0) ? v : null;
}

/** True if the table holds op i's prefix. */
export function holdsOp(t: TableView, b: OpBatch, i: number): boolean {
  const len = b.len[i]!;
  if (t.counts[len] === 0) return false;
  if (inHash(t, len)) return t.desc.family === 4 ? t.tab.has4(len, b.addr4[i]!) : t.tab.has(len, b.addr6, i * 16);
  const key = Buffer.alloc(t.desc.keySize);
  writeKeyOp(key, 0, b, i);
  return trieExact(t.trie, key) !== null;
}

/** The entry stored for exactly this prefix (host bits ignored), or null. */
export function lookupPrefix(t: TableView, prefix: Prefix): KernelEntry | null {
  if (t.counts[prefix.len] === 0) return null;
  const bytes = maskBytes(prefix.bytes, prefix.len);
  let e: TabValue | null;
  if (inHash(t, prefix.len)) {
    e = t.tab.get(prefix.len, bytes);
  } else {
    const key = Buffer.alloc(t.desc.keySize);
    key.writeUInt32LE(prefix.len, LAYOUT.fw_key4.fields.prefixlen);
    key.set(bytes, LAYOUT.fw_key4.fields.addr);
    const v = trieExact(t.trie, key);
    e = v ? { slot: entrySlot(v, 0), attrs: entryAttrs(v, 0) } : null;
  }
  if (!e) return null;
  return {
    direction: t.desc.direction,
    prefix: { family: prefix.family, bytes, len: prefix.len },
    action: (e.attrs & ATTR_ALLOW) !== 0 ? 'allow' : 'deny',
    mode: (e.attrs & ATTR_MONITOR) !== 0 ? 'monitor' : 'enforce',
    slot: e.slot,
  };
}

export function tableLayout(t: TableView): TableLayout {
  const set = activeSet(t.config);
  const trieLens: number[] = [];
  for (let l = 0; l <= t.desc.maxLen; l++) if (t.counts[l]! > 0 && !set.hashLens.includes(l)) trieLens.push(l);
  return { direction: t.desc.direction, family: t.desc.family, hashLens: [...set.hashLens], trieLens, useTrie: set.useTrie };
}

/**
 * Appends every entry (hash slots, spill hash, trie) to `out` as
 * entry.upsert ops, reading `chunk` elements per batch lookup; yields
 * whenever `out` is full (the caller empties it).
 */
export function* scanTable(t: TableView, out: OpBatch, chunk: number): Generator<void> {
  const table = t.desc.id;
  // The hash's slots (the table is mapped while this runs)...
  for (let pos = 0; pos >= 0; ) {
    pos = scanSlots(t.tab, out, table, pos);
    if (out.full) yield;
  }
  // ...its spill hash, and the trie.
  for (const m of [t.spill, t.trie]) {
    const ks = m.keySize;
    for (const { keys, values, count } of m.lookupChunks(chunk)) {
      for (let i = 0; i < count; i++) {
        if (out.full) yield;
        const len = keyLen(keys, i * ks);
        const v = i * m.valueStride;
        const attrs = entryAttrs(values, v);
        const slot = entrySlot(values, v);
        if (t.desc.family === 4) out.entryUpsert(table, keyAddr4(keys, i * ks), 0, len, attrs, slot);
        else out.entryUpsert(table, keys, i * ks + LAYOUT.fw_key6.fields.addr, len, attrs, slot);
      }
    }
  }
}

/** The highest counter slot an entry names, or -1. */
export function maxSlotOf(t: TableView): number {
  let max = -1;
  forEachEntry(t.tab, (_len, _a4, _a6, _off, _attrs, slot) => {
    if (slot > max) max = slot;
  });
  for (const { values, count } of t.trie.lookupChunks()) {
    for (let i = 0; i < count; i++) max = Math.max(max, entrySlot(values, i * t.trie.valueStride));
  }
  return max;
}

/** Every entry of an IPv4 table (hash, spill, trie) for its /24 index: length, masked address, slot, verdict. */
export function forEachEntry4(t: TableView, fn: (len: number, a: number, slot: number, verdict: number) => void): void {
  forEachEntry(t.tab, (len, a4, _a6, _off, attrs, slot) => fn(len, a4, slot, slotVerdict(attrs)));
  const trie = t.trie;
  const ks = trie.keySize;
  for (const { keys, values, count } of trie.lookupChunks()) {
    for (let i = 0; i < count; i++) {
      const v = i * trie.valueStride;
      fn(keyLen(keys, i * ks), keyAddr4(keys, i * ks), entrySlot(values, v), slotVerdict(entryAttrs(values, v)));
    }
  }
}

/**
 * The /24 index word of the longest entry shorter than len that covers a
 * (0: none) in an IPv4 table. inHashLen: the lengths whose entries live in
 * the hash (as before the batch: a length never moves while it has entries,
 * but the one a batch's deletes may empty is unpublished before them).
 */
export function coverWord4(t: TableView, len: number, a: number, inHashLen: Uint8Array): number {
  const key = coverKey;
  const K = LAYOUT.fw_key4.fields;
  const bytes = key.subarray(K.addr);
  for (let l = len - 1; l >= 0; l--) {
    if (t.counts[l] === 0) continue;
    key.writeUInt32LE(l, K.prefixlen);
    key.writeUInt32BE(maskedAddr4(a, l), K.addr);
    if (inHashLen[l]) {
      const v = t.tab.get(l, bytes);
      if (v) return d24Word(l, v.slot, slotVerdict(v.attrs));
    } else {
      const v = trieExact(t.trie, key);
      if (v) return d24Word(l, entrySlot(v, 0), slotVerdict(entryAttrs(v, 0)));
    }
  }
  return 0;
}

/**
 * Counts the entries per length into t.counts from the maps (the hash with
 * its spill, the trie up to the table's longest length); returns the lengths
 * the hash holds entries of and those the trie does.
 */
export function countEntries(t: TableView): { hashLens: Set<number>; trieLens: Set<number> } {
  const counts = t.counts;
  counts.fill(0);
  const hashLens = new Set<number>();
  const trieLens = new Set<number>();
  forEachEntry(t.tab, (len) => {
    counts[len]!++;
    hashLens.add(len);
  });
  for (const { keys, count } of t.trie.lookupChunks()) {
    for (let i = 0; i < count; i++) {
      const len = keyLen(keys, i * t.desc.keySize);
      if (len <= t.desc.maxLen) {
        counts[len]!++;
        trieLens.add(len);
      }
    }
  }
  return { hashLens, trieLens };
}
