// One of the four tables (direction x family) in one generation: its
// bucketed hash for the lengths published in its config (fwtab.ts), its LPM
// trie for the others, IPv4 its direct /24 index (direct24.ts), and the
// entries per prefix length that say where each length lives (kept from one
// generation to the next, like the trie). Runs of entry ops are written here:
//
//   - upsert: a length the batch populates first is placed (lengths.ts: the
//     hash while it has room for K lengths, else the trie); hash entries are
//     single stores through the mapping, new trie entries of fresh lengths
//     one batch call, others one by one (so the counts stay exact); then the
//     /24 index (blocks for the /16s of new entries longer than /16, then
//     the words); then the new length set is published.
//   - delete: the lengths (and the trie flag) the deletes empty are
//     unpublished first; then the entries go; then the /24 index (a deleted
//     entry's /24s go to the longest entry that still covers them; a /16
//     left without longer entries gets its answer back and frees its block).
// A length never moves between the hash and the trie while it has entries,
// so no entry is ever in flight between structures. What is only read of the
// maps (lookups, scans, the counts behind a recount) is table-reads.ts's.

import { constants as osConstants } from 'node:os';
import type { Prefix } from '../../../common/src/cidr.js';
import { FW_LEN_SLOTS, FW_MAX_HASH_LENS, LAYOUT, type LenSet, type TableCfg, type TableDesc, type TableIndex } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { KernelEntry, OpBatch } from './datapath.js';
import { type D16Words, Direct24 } from './direct24.js';
import type { LongerCounts } from './direct24-plan.js';
import { DatapathError } from './errors.js';
import { HashTable } from './fwtab.js';
import { forEachEntry } from './fwtab-scan.js';
import { batchKey, keyAddr4, maskedAddr4, writeEntryValue, writeKeyOp } from './key-encoding.js';
import { mergeDesc, placeNewLengths } from './lengths.js';
import { slotVerdict } from './slot-words.js';
import { type TableConfigs, activeSet, sameSet } from './table-config.js';
import {
  type TableLayout,
  countEntries,
  coverWord4,
  forEachEntry4,
  holdsOp,
  lookupPrefix,
  maxSlotOf,
  scanTable,
  tableLayout,
} from './table-reads.js';
import { BPF_EXIST, BPF_NOEXIST } from './uapi.js';

const E = osConstants.errno;

export type { TableLayout } from './table-reads.js';

/** The maps of one table in one generation. */
export interface TableMaps {
  readonly tab: BpfMap;
  readonly spill: BpfMap;
  /** Shared by every generation. */
  readonly trie: BpfMap;
  /** IPv4: the /24 block pool. */
  readonly pool: BpfMap | null;
  /** IPv4: the /16 words in the generation's fw_tblcfg. */
  readonly d16: D16Words | null;
}

export class PrefixTable {
  readonly desc: TableDesc;
  /** The hash lengths' entries (bucketed hash + spill). */
  readonly tab: HashTable;
  readonly spill: BpfMap;
  readonly trie: BpfMap;
  /** IPv4: the direct /24 index, derived from the entries (hash, spill, trie). */
  readonly d24: Direct24 | null;
  /** Entries per prefix length (pinned in fw_lenstat; the same array in every generation). */
  readonly counts: Uint32Array;
  /** Written since the counts were last pinned. */
  private touched = false;
  private cfg: TableCfg;

  /**
   * cfg: the table's config in this generation; k: the most lengths the hash
   * holds; counts: the entries per length (carried across generations), and
   * the index's counts of longer entries, if counted; fresh: the hash is new
   * and no program reads it yet (IPv6 slots need no grace period).
   */
  constructor(
    desc: TableDesc,
    maps: TableMaps,
    cfg: TableCfg,
    private readonly configs: TableConfigs,
    private readonly k: number,
    counts: Uint32Array,
    longer: LongerCounts | null = null,
    fresh = false,
  ) {
    this.desc = desc;
    this.cfg = cfg;
    this.counts = counts;
    this.spill = maps.spill;
    this.trie = maps.trie;
    this.tab = new HashTable(desc.family, maps.tab, this.spill, cfg.seed, cfg.nbuckets, fresh);
    try {
      this.d24 = maps.pool && maps.d16 ? new Direct24(maps.pool, maps.d16, (fn) => forEachEntry4(this, fn), longer) : null;
    } catch (e) {
      this.tab.close();
      throw e;
    }
  }

  /** The config this table was last published with. */
  get config(): TableCfg {
    return this.cfg;
  }

  /** Prefixes the hash is sized for (7 IPv4 slots per bucket at most 4/7 full, 5 IPv6 slots at most 60%). */
  get size(): number {
    return this.tab.nbuckets * (this.desc.family === 4 ? 4 : 3);
  }

  /** The highest counter slot an entry names, or -1. */
  maxSlot(): number {
    return maxSlotOf(this);
  }

  /** Copies every entry of another generation's hash (and spill hash) into this one's (new, not read yet). */
  fillFrom(old: PrefixTable): void {
    const t = this.tab;
    if (this.desc.family === 4) forEachEntry(old.tab, (len, a4, _a6, _off, attrs, slot) => t.upsert4(len, a4, attrs, slot));
    else forEachEntry(old.tab, (len, _a4, a6, off, attrs, slot) => t.upsert(len, a6, off, attrs, slot));
  }

  get id(): TableIndex {
    return this.desc.id;
  }

  close(): void {
    this.tab.close();
    this.d24?.close();
  }

  /** Maps the whole hash (before many ops on it). */
  mapAll(): void {
    this.tab.mapAll();
  }

  /** Unmaps every window of the hash and the /24 index. */
  release(): void {
    this.tab.release();
    this.d24?.release();
  }

  get mappedPages(): number {
    return this.tab.region.mapped + (this.d24?.mappedPages ?? 0);
  }

  entries(): number {
    let s = 0;
    for (const v of this.counts) s += v;
    return s;
  }

  /** Pins the per-length counts through `write` if the table was written since they last were. */
  pinCounts(write: (table: TableIndex, counts: Uint32Array) => void): void {
    if (!this.touched) return;
    write(this.id, this.counts);
    this.touched = false;
  }

  /** After a write that failed half-way: the /24 index follows what the maps hold, if this table was written. */
  repairIndex(): void {
    if (this.touched) this.d24?.rebuild();
  }

  // ---------------------------------------------------------------- reads (table-reads.ts)

  /** True if the table holds op i's prefix. */
  has(b: OpBatch, i: number): boolean {
    return holdsOp(this, b, i);
  }

  /** The entry stored for exactly this prefix (host bits ignored), or null. */
  lookup(prefix: Prefix): KernelEntry | null {
    return lookupPrefix(this, prefix);
  }

  layout(): TableLayout {
    return tableLayout(this);
  }

  /** Every entry as entry.upsert ops into `out` (`chunk` elements per batch lookup); yields whenever `out` is full. */
  scan(out: OpBatch, chunk: number): Generator<void> {
    return scanTable(this, out, chunk);
  }

  // ---------------------------------------------------------------- writes

  /** entry.upsert ops [i0, j0) of this table (ops of other tables are skipped). */
  upsert(b: OpBatch, i0: number, j0: number): void {
    const id = this.id;
    const counts = this.counts;
    const tab = this.tab;
    const trie = this.trie;
    this.touched = true;
    const set = activeSet(this.cfg);
    // Place lengths this batch populates for the first time.
    const newLens = new Map<number, number>();
    for (let i = i0; i < j0; i++) {
      if (b.table[i] !== id) continue;
      const len = b.len[i]!;
      if (counts[len] === 0 && !set.hashLens.includes(len)) newLens.set(len, (newLens.get(len) ?? 0) + 1);
    }
    this.prepareD24(b, i0, j0); // before this batch adds any entry longer than /16
    const placement = placeNewLengths(set.hashLens, newLens, this.k);
    const hashLens = new Set([...set.hashLens, ...placement.toHash]);

    const ks = this.desc.keySize;
    const vs = LAYOUT.fw_entry.size;
    const inHashLen = new Uint8Array(FW_LEN_SLOTS);
    for (const l of hashLens) inHashLen[l] = 1;
    const isFresh = new Uint8Array(FW_LEN_SLOTS);
    for (const l of newLens.keys()) isFresh[l] = 1;
    let nTrie = 0;
    for (let i = i0; i < j0; i++) if (b.table[i] === id && !inHashLen[b.len[i]!]) nTrie++;
    const toTrie = { keys: Buffer.alloc(nTrie * ks), vals: Buffer.alloc(nTrie * vs), lens: new Uint8Array(nTrie), n: 0 };
    // Trie entries of already-populated lengths may replace an existing key:
    // they go one by one (NOEXIST, then EXIST) so the counts stay exact.
    const single: Array<{ key: Buffer; val: Buffer; len: number }> = [];
    /** Keys in the batch insert (the same key twice there would be counted twice). */
    const batched = new Set<number | string>();
    let bk: number | string = 0;
    const v4 = this.desc.family === 4;
    /** IPv4: new entries longer than /16 (lengths, masked addresses). */
    const deepLen: number[] = [];
    const deepA: number[] = [];
    for (let i = i0; i < j0; i++) {
      if (b.table[i] !== id) continue;
      const len = b.len[i]!;
      const attrs = b.attrs[i]!;
      if (inHashLen[len]) {
        // The hash: one atomic store per entry through the mapping (it says whether the prefix was new).
        const fresh = v4 ? tab.upsert4(len, b.addr4[i]!, attrs, b.slot[i]!) : tab.upsert(len, b.addr6, i * 16, attrs, b.slot[i]!);
        if (fresh) {
          counts[len]!++;
          if (v4 && len > 16) {
            deepLen.push(len);
            deepA.push(maskedAddr4(b.addr4[i]!, len));
          }
        }
      } else if (isFresh[len] && !batched.has((bk = batchKey(b, i)))) {
        batched.add(bk);
        writeKeyOp(toTrie.keys, toTrie.n * ks, b, i);
        writeEntryValue(toTrie.vals, toTrie.n * vs, b.slot[i]!, attrs, len);
        toTrie.lens[toTrie.n] = len;
        toTrie.n++;
      } else {
        // (a key of a fresh length that this batch writes again goes here too: counted once)
        const key = Buffer.alloc(ks);
        writeKeyOp(key, 0, b, i);
        const val = Buffer.alloc(vs);
        writeEntryValue(val, 0, b.slot[i]!, attrs, len);
        single.push({ key, val, len });
      }
    }
    this.insertBatch(toTrie.keys, toTrie.vals, toTrie.lens, toTrie.n);
    for (const s of single) {
      const errno = trie.tryUpdate(s.key, s.val, BPF_NOEXIST);
      if (errno === 0) {
        counts[s.len]!++;
        if (v4 && s.len > 16) {
          deepLen.push(s.len);
          deepA.push(keyAddr4(s.key, 0));
        }
      } else if (errno === E.EEXIST) trie.update(s.key, s.val, BPF_EXIST);
      else
        throw new DatapathError('update map', trie.name, errno, errno === E.E2BIG ? `map is full (${trie.maxEntries} entries)` : undefined);
    }
    // The /24 index after the entries are in: blocks for new entries longer than /16 (LONGER for those longer
    // than /24), then each entry of length <= 24 takes its range.
    const d24 = this.d24;
    if (d24) {
      for (let k = 0; k < toTrie.n; k++) {
        if (toTrie.lens[k]! > 16) {
          deepLen.push(toTrie.lens[k]!);
          deepA.push(keyAddr4(toTrie.keys, k * ks));
        }
      }
      d24.addDeepAll(Uint8Array.from(deepLen), Uint32Array.from(deepA), deepLen.length);
      const p = shortOps(b, i0, j0, id);
      const slot = new Uint32Array(p.n);
      const verdict = new Uint8Array(p.n);
      for (let k = 0; k < p.n; k++) {
        slot[k] = b.slot[p.op[k]!]!;
        verdict[k] = slotVerdict(b.attrs[p.op[k]!]!);
      }
      d24.paintAll(p.n, p.len, p.a, slot, verdict);
    }
    // Publish after the entries are in: new hash lengths, the trie flag.
    const next: LenSet = { hashLens: mergeDesc(set.hashLens, placement.toHash), useTrie: set.useTrie || this.trieCount(hashLens) > 0 };
    if (!sameSet(next, set)) this.publish(next);
  }

  /** Batch insert of trie keys of fresh lengths (none can exist yet). */
  private insertBatch(keys: Buffer, vals: Buffer, lens: Uint8Array, n: number): void {
    const m = this.trie;
    if (n === 0) return;
    const res = m.updateBatch(keys, vals, n);
    for (let i = 0; i < res.done; i++) this.counts[lens[i]!]!++;
    if (res.errno === 0) return;
    // Report the failing element; earlier ones are in (counted above).
    throw new DatapathError(
      'update batch of map',
      m.name,
      res.errno,
      res.errno === E.E2BIG ? `map is full (${m.maxEntries} entries); ${res.done} of ${n} written` : undefined,
    );
  }

  /** entry.delete ops [i0, j0) of this table, n of them (absent prefixes are skipped). */
  delete(b: OpBatch, i0: number, j0: number, n: number): void {
    const id = this.id;
    const counts = this.counts;
    this.touched = true;
    const set = activeSet(this.cfg);
    this.prepareD24(b, i0, j0); // before this batch removes any entry longer than /16
    const inHashLen = new Uint8Array(FW_LEN_SLOTS);
    for (const l of set.hashLens) inHashLen[l] = 1;
    const ks = this.desc.keySize;
    const perLen = new Map<number, number>();
    const h: number[] = [];
    const tr = { keys: Buffer.alloc(n * ks), lens: new Uint8Array(n), n: 0 };
    for (let i = i0; i < j0; i++) {
      if (b.table[i] !== id) continue;
      const len = b.len[i]!;
      if (counts[len] === 0) continue; // nothing of that length: absent
      perLen.set(len, (perLen.get(len) ?? 0) + 1);
      if (inHashLen[len]) {
        h.push(i);
        continue;
      }
      writeKeyOp(tr.keys, tr.n * ks, b, i);
      tr.lens[tr.n] = len;
      tr.n++;
    }
    // Unpublish, before deleting, the lengths (and the trie) these deletes empty.
    const emptied = new Set<number>();
    for (const [len, k] of perLen) if (counts[len]! <= k) emptied.add(len);
    const hashAfter = set.hashLens.filter((l) => !emptied.has(l));
    let trieAfter = 0;
    for (let l = this.trieFloor(); l <= this.desc.maxLen; l++)
      if (counts[l]! > 0 && !set.hashLens.includes(l) && !emptied.has(l)) trieAfter++;
    const before: LenSet = { hashLens: hashAfter, useTrie: set.useTrie && trieAfter > 0 };
    if (!sameSet(before, set)) this.publish(before);

    const v4 = this.desc.family === 4;
    /** IPv4: deleted entries longer than /16 (lengths, masked addresses). */
    const goneLen: number[] = [];
    const goneA: number[] = [];
    for (const i of h) {
      const len = b.len[i]!;
      if (v4 ? this.tab.delete4(len, b.addr4[i]!) : this.tab.delete(len, b.addr6, i * 16)) {
        counts[len]!--;
        if (v4 && len > 16) {
          goneLen.push(len);
          goneA.push(maskedAddr4(b.addr4[i]!, len));
        }
      }
    }
    // set = the lengths in the hash before this delete (some may be unpublished by now).
    if (h.length > 0 && set.hashLens.every((l) => counts[l] === 0)) this.tab.clearFlagsOfEmptyTable();
    this.trie.deleteMany(tr.keys, tr.n, (i) => {
      counts[tr.lens[i]!]!--;
      if (v4 && tr.lens[i]! > 16) {
        goneLen.push(tr.lens[i]!);
        goneA.push(keyAddr4(tr.keys, i * ks));
      }
    });
    // The /24 index once the entries are gone: a deleted entry's /24s go to what covers them now; /16s left
    // without longer entries get their answer back and free their blocks.
    const d24 = this.d24;
    if (d24) {
      d24.removeDeepAll(Uint8Array.from(goneLen), Uint32Array.from(goneA), goneLen.length);
      const p = shortOps(b, i0, j0, id);
      const cover = new Uint32Array(p.n);
      for (let k = 0; k < p.n; k++) cover[k] = coverWord4(this, p.len[k]!, p.a[k]!, inHashLen);
      d24.unpaintAll(p.n, p.len, p.a, cover);
      d24.releaseEmptied();
    }

    // A delete of an absent key leaves its length populated: publish it again.
    const cur = activeSet(this.cfg);
    const keep = set.hashLens.filter((l) => counts[l]! > 0);
    const after: LenSet = { hashLens: keep, useTrie: this.trieCount(new Set(keep)) > 0 };
    if (!sameSet(after, cur)) this.publish(after);
  }

  /** Rebuilds the counts from the maps and republishes (after a crash mid-apply); returns the /24 words rebuilt. */
  recount(): number {
    const set = activeSet(this.cfg);
    const { hashLens: hashWithEntries, trieLens } = countEntries(this);
    // Every hash length with entries is published; the trie flag follows the trie.
    const next: LenSet = {
      hashLens: mergeDesc([...hashWithEntries], []).slice(0, FW_MAX_HASH_LENS),
      useTrie: [...trieLens].some((l) => l >= this.trieFloor()),
    };
    if (!sameSet(next, set)) this.publish(next);
    this.touched = true;
    return this.d24?.rebuild() ?? 0;
  }

  // ---------------------------------------------------------------- helpers

  /** Double-buffered config write: the programs never read a half-written set. */
  private publish(next: LenSet): void {
    this.cfg = this.configs.publish(this.id, this.cfg, next);
  }

  /**
   * The shortest trie length the programs look up: IPv4 packets read the /24
   * index for every length up to 24, so the trie flag (`useTrie`) of an IPv4
   * table says whether the trie holds an entry longer than /24.
   */
  private trieFloor(): number {
    return this.d24 ? 25 : 0;
  }

  /** Trie entries the programs look up: of lengths outside hashLens, and (IPv4) longer than /24. */
  private trieCount(hashLens: ReadonlySet<number>): number {
    let n = 0;
    for (let l = this.trieFloor(); l <= this.desc.maxLen; l++) if (!hashLens.has(l)) n += this.counts[l]!;
    return n;
  }

  /** Counts the /24 index's longer entries (once per process) if ops [i0, j0) touch one of this table. */
  private prepareD24(b: OpBatch, i0: number, j0: number): void {
    if (!this.d24) return;
    for (let i = i0; i < j0; i++) {
      if (b.table[i] === this.id && b.len[i]! > 16) {
        this.d24.prepare();
        return;
      }
    }
  }
}

/** The IPv4 entry ops of table id in [i0, j0) of length <= 24: op index, length, masked address. */
function shortOps(b: OpBatch, i0: number, j0: number, id: number): { n: number; op: Uint32Array; len: Uint8Array; a: Uint32Array } {
  let n = 0;
  for (let i = i0; i < j0; i++) if (b.table[i] === id && b.len[i]! <= 24) n++;
  const out = { n, op: new Uint32Array(n), len: new Uint8Array(n), a: new Uint32Array(n) };
  let k = 0;
  for (let i = i0; i < j0; i++) {
    if (b.table[i] !== id || b.len[i]! > 24) continue;
    out.op[k] = i;
    out.len[k] = b.len[i]!;
    out.a[k] = maskedAddr4(b.addr4[i]!, b.len[i]!);
    k++;
  }
  return out;
}
