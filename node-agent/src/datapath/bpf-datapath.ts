// The real Datapath: libbpf over koffi, maps/programs/links pinned under
// pinDir. See datapath.ts for the contract and bpf/README.md for the layout.
//
//   const dp = openDatapath({ pinDir: '/sys/fs/bpf/fleetwall', logger });
//   dp.attach('eth0');                      // XDP ingress + TC egress, pinned links
//   dp.applyBatch(batch, { revision: 7n, storeId }); // batch: an OpBatch of ops
//   dp.close();                             // enforcement stays in place
//
// Opening again reuses every pin: nothing is detached or flushed, and the
// default action stored with the pins is kept (a different one is refused).
// pins.ts owns the pin dir and the ABI check, objects.ts the loading,
// attach.ts the links (one detach path), owned.ts what a close releases,
// journal.ts, pinned-meta.ts, table-config.ts, rule-counters.ts and
// if-counters.ts their maps.

import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { maskBytes, type Prefix } from '../../../common/src/cidr.js';
import type { DefaultAction, RuleDirection } from '../../../common/src/policy.js';
import {
  FW_DEFAULT,
  FW_LEN_SLOTS,
  FW_MAX_HASH_LENS,
  FW_STORE_ID_MAX,
  LAYOUT,
  MAP,
  type MapName,
  PROG,
  TABLES,
  type TableCfg,
  type TableDesc,
  tableFamily,
  tableFor,
  type LenSet,
} from './abi.js';
import { type BpfAttachOptions, LinkAttacher, detachLinks, ifindexOf, uninstallPins } from './attach.js';
import type { BpfMap } from './bpf-map.js';
import {
  ATTR_ALLOW,
  ATTR_MONITOR,
  OP,
  OpBatch,
  type TableIndex,
  type Datapath,
  type DatapathCapacity,
  type DatapathOptions,
  type EgressAttachMode,
  type InterfaceAttachment,
  type InterfaceCounters,
  type KernelEntry,
  type SyncMeta,
  type TableUsage,
} from './datapath.js';
import { DatapathError } from './errors.js';
import { Direct24, d24Word } from './direct24.js';
import { HashTable, type TabValue } from './fwtab.js';
import { batchKey, entryAttrs, entryLen, entrySlot, keyAddr4, keyLen, maskedAddr4, writeEntryValue, writeKeyOp } from './key-encoding.js';
import { slotVerdict } from './slot-words.js';
import { mergeDesc, placeNewLengths } from './lengths.js';
import { IfCounters } from './if-counters.js';
import { Journal } from './journal.js';
import { type MapRegion, possibleCpus, setLibbpfLogSink } from './libbpf.js';
import { DEFAULT_OBJ_DIR, type LoadedObjects, loadObjects } from './objects.js';
import { checkOptions, mapSizes } from './open-options.js';
import { Owned } from './owned.js';
import { PinnedMeta } from './pinned-meta.js';
import { DEFAULT_PIN_DIR, checkPinnedAbi, pinProgram, preparePinDir, removePins } from './pins.js';
import { RuleCounters } from './rule-counters.js';
import { TableConfigs, activeSet, emptySet, sameSet } from './table-config.js';
import { type TestRunOptions, type TestRunResult, progTestRun } from './test-run.js';
import { BPF_EXIST, BPF_NOEXIST } from './uapi.js';

export type { BpfAttachOptions } from './attach.js';
export { removePins, uninstallPins };

const E = osConstants.errno;

export interface BpfDatapathOptions extends DatapathOptions {
  readonly logger?: Logger;
  /**
   * K, prefix lengths per table kept in the hash (0..8; 0 = every length in the LPM trie, behind the IPv4 /24 index).
   * Used only when the maps are created; reopened pins keep theirs.
   */
  readonly maxHashLengths?: number;
}

interface TableState {
  readonly desc: TableDesc;
  /** The hash lengths' entries (bucketed hash + spill). */
  readonly tab: HashTable;
  readonly trie: BpfMap;
  /** IPv4: the direct /24 index, derived from the entries (hash, spill, trie). */
  readonly d24: Direct24 | null;
  cfg: TableCfg;
  readonly counts: Uint32Array;
  touched: boolean;
}

export function openDatapath(opts: BpfDatapathOptions): BpfDatapath {
  const pinDir = resolve(opts.pinDir || DEFAULT_PIN_DIR);
  const existed = existsSync(pinDir);
  // Pins of another ABI: say so before libbpf tries to reuse their maps.
  if (existed) checkPinnedAbi(pinDir);
  const owned = new Owned();
  try {
    return new BpfDatapath(pinDir, opts, owned);
  } catch (e) {
    owned.close();
    // A failed first open leaves nothing behind.
    if (!existed) removePins(pinDir);
    throw e;
  }
}

export class BpfDatapath implements Datapath {
  readonly capacity: DatapathCapacity;
  readonly defaultAction: DefaultAction;
  readonly createdFresh: boolean;
  readonly pinDir: string;
  /** K of this install (read from the pins when reopened). */
  readonly maxHashLengths: number;

  private readonly log: Logger | undefined;
  private readonly loaded: LoadedObjects;
  private readonly links: LinkAttacher;
  private readonly tables: TableState[];
  private readonly meta: PinnedMeta;
  private readonly configs: TableConfigs;
  private readonly journal: Journal;
  private readonly ruleCounters: RuleCounters;
  private readonly ifCounters: IfCounters;
  /** The /24 indexes' regions (released after every public operation). */
  private readonly regions: MapRegion[] = [];
  private closed = false;
  /** cover4()'s trie key. */
  private readonly coverKey = Buffer.alloc(LAYOUT.fw_key4.size);

  /** Use openDatapath(): it checks the pins' ABI first and cleans up a failed open. */
  constructor(
    pinDir: string,
    opts: BpfDatapathOptions,
    private readonly owned: Owned,
  ) {
    this.log = opts.logger;
    this.pinDir = pinDir;
    if (this.log) {
      const log = this.log;
      setLibbpfLogSink((level, line) => (level === 'warn' ? log.warn({ libbpf: line }, 'libbpf') : log.debug({ libbpf: line }, 'libbpf')));
    }
    preparePinDir(pinDir);
    const ncpu = possibleCpus();
    const want = checkOptions(opts.capacity, opts.maxHashLengths, ncpu, pinDir);
    this.loaded = loadObjects(resolve(opts.objDir ?? DEFAULT_OBJ_DIR), pinDir, mapSizes(want.capacity, ncpu), owned);
    this.links = new LinkAttacher(pinDir, this.loaded.progs, this.log);
    this.meta = new PinnedMeta(this.map(MAP.META), this.map(MAP.LENSTAT));
    this.ruleCounters = owned.add(new RuleCounters(this.map(MAP.RULE_CNT), ncpu));
    this.configs = owned.add(new TableConfigs(this.map(MAP.TBLCFG)));
    const cfgs = TABLES.map((desc) => this.configs.read(desc.id));

    this.createdFresh = this.meta.fresh;
    if (this.createdFresh) {
      // Fresh (or a creation that died before it finished): initialise.
      this.defaultAction = opts.defaultAction ?? 'pass';
      this.maxHashLengths = want.k;
      this.capacity = { prefixesPerTable: want.capacity.prefixesPerTable, counterSlots: this.ruleCounters.slots };
      for (const desc of TABLES) {
        const cfg: TableCfg = {
          active: 0,
          defaultAction: FW_DEFAULT[this.defaultAction],
          nbuckets: this.map(desc.tab).maxEntries,
          seed: randomInt(0, 2 ** 32),
          ruleSlots: this.ruleCounters.slots,
          sets: [emptySet(), emptySet()],
        };
        // No program reads a table before its datapath is created (nothing attached yet).
        this.configs.init(desc.id, cfg);
        cfgs[desc.id] = cfg;
      }
    } else {
      const pinned = this.meta.value;
      this.defaultAction = pinned.defaultAction === FW_DEFAULT.drop ? 'drop' : 'pass';
      if (opts.defaultAction !== undefined && opts.defaultAction !== this.defaultAction) {
        throw new DatapathError(
          'open pins',
          pinDir,
          E.EINVAL,
          `the pinned datapath was created with default action "${this.defaultAction}"; refusing to change it to "${opts.defaultAction}" (uninstall first to change it)`,
        );
      }
      this.maxHashLengths = pinned.maxHashLens;
      this.capacity = { prefixesPerTable: pinned.prefixesPerTable, counterSlots: pinned.ruleSlots };
    }

    // The tables' shared memory.
    const tables: TableState[] = [];
    TABLES.forEach((desc, i) => {
      const cfg = cfgs[i]!;
      const tab = owned.add(new HashTable(desc.family, this.map(desc.tab), this.map(desc.spill), cfg.seed, cfg.nbuckets));
      const trie = this.map(desc.trie);
      let d24: Direct24 | null = null;
      if (desc.d24) {
        d24 = new Direct24(this.map(desc.d24), (fn) => forEachEntry4(tab, trie, fn));
        this.regions.push(owned.add(d24.region));
      }
      tables.push({ desc, tab, trie, d24, cfg, counts: new Uint32Array(FW_LEN_SLOTS), touched: false });
    });
    this.tables = tables;
    this.journal = new Journal(this.map(MAP.JOURNAL));
    this.ifCounters = owned.add(new IfCounters(this.map(MAP.IF_CNT), this.map(MAP.IF_CNTX), ncpu));

    if (this.createdFresh) {
      this.meta.create(FW_DEFAULT[this.defaultAction], want.k, want.capacity.prefixesPerTable, this.ruleCounters.slots);
      this.log?.info({ pinDir, defaultAction: this.defaultAction, capacity: this.capacity, maxHashLengths: want.k }, 'datapath created');
    } else {
      for (const t of this.tables) this.meta.readCounts(t.desc.id, t.counts);
      if (this.meta.value.dirty) {
        this.log?.warn({ pinDir }, 'previous apply did not finish; recounting prefix lengths');
        this.recount();
      }
      this.log?.info({ pinDir, defaultAction: this.defaultAction, revision: this.meta.value.revision.toString() }, 'datapath reopened');
    }
    this.releaseWindows();
    pinProgram(pinDir, PROG.XDP, this.loaded.progs.xdpFd);
    pinProgram(pinDir, PROG.TC, this.loaded.progs.tcFd);
  }

  /** Unmaps every window of the tables, fw_tblcfg and the rule counters (nothing stays mapped at rest). */
  private releaseWindows(): void {
    for (const t of this.tables) t.tab.release();
    for (const r of this.regions) r.release();
    this.configs.region.release();
    this.ruleCounters.region.release();
  }

  /** Pages of the shared maps mapped into this process right now (0 at rest; tests). */
  mappedPages(): number {
    let n = this.configs.region.mapped + this.ruleCounters.region.mapped;
    for (const t of this.tables) n += t.tab.region.mapped;
    for (const r of this.regions) n += r.mapped;
    return n;
  }

  // ---------------------------------------------------------------- reads

  *readEntryChunks(chunk = READ_CHUNK): Generator<OpBatch> {
    this.assertOpen();
    const out = new OpBatch(chunk);
    try {
      for (const t of this.tables) {
        const table = t.desc.id as TableIndex;
        // The hash's slots (the table is mapped while this runs)...
        for (let pos = 0; pos >= 0; ) {
          pos = t.tab.scanInto(out, table, pos);
          if (out.full) {
            yield out;
            out.clear();
          }
        }
        // ...its spill hash, and the trie.
        for (const m of [this.map(t.desc.spill), t.trie]) {
          const ks = m.keySize;
          for (const { keys, values, count } of m.lookupChunks(chunk)) {
            for (let i = 0; i < count; i++) {
              if (out.full) {
                yield out;
                out.clear();
              }
              const len = keys.readUInt32LE(i * ks);
              const v = i * m.valueStride;
              const attrs = entryAttrs(values, v);
              const slot = entrySlot(values, v);
              if (t.desc.family === 4) out.entryUpsert(table, keyAddr4(keys, i * ks), 0, len, attrs, slot);
              else out.entryUpsert(table, keys, i * ks + 4, len, attrs, slot);
            }
          }
        }
      }
      if (out.length > 0) yield out;
    } finally {
      this.releaseWindows();
    }
  }

  *readJournalChunks(chunk = READ_CHUNK): Generator<OpBatch> {
    this.assertOpen();
    yield* this.journal.chunks(chunk);
  }

  readMeta(): SyncMeta {
    this.assertOpen();
    return this.meta.readSync();
  }

  usage(): TableUsage[] {
    return this.tables.map((t) => ({
      direction: t.desc.direction,
      family: t.desc.family,
      entries: sum(t.counts),
      capacity: this.capacity.prefixesPerTable,
    }));
  }

  /** The entry stored for exactly this prefix (one map lookup), or null. */
  lookupEntry(direction: RuleDirection, prefix: Prefix): KernelEntry | null {
    try {
      return this.lookupEntryNow(direction, prefix);
    } finally {
      this.releaseWindows();
    }
  }

  private lookupEntryNow(direction: RuleDirection, prefix: Prefix): KernelEntry | null {
    this.assertOpen();
    const t = this.tables[tableFor(direction, prefix.family).id]!;
    if (t.counts[prefix.len] === 0) return null;
    const bytes = maskBytes(prefix.bytes, prefix.len);
    let e: TabValue | null;
    if (this.inHash(t, prefix.len)) {
      e = t.tab.get(prefix.len, bytes);
    } else {
      const key = Buffer.alloc(t.desc.keySize);
      key.writeUInt32LE(prefix.len, 0);
      key.set(bytes, 4);
      const v = trieExact(t.trie, key);
      e = v ? { slot: entrySlot(v, 0), attrs: entryAttrs(v, 0) } : null;
    }
    if (!e) return null;
    const action = (e.attrs & ATTR_ALLOW) !== 0 ? 'allow' : 'deny';
    const mode = (e.attrs & ATTR_MONITOR) !== 0 ? 'monitor' : 'enforce';
    return { direction, prefix: { family: prefix.family, bytes, len: prefix.len }, action, mode, slot: e.slot };
  }

  /** Where each populated prefix length lives (for tests, the bench and debugging). */
  layout(): Array<{ direction: RuleDirection; family: 4 | 6; hashLens: number[]; trieLens: number[]; useTrie: boolean }> {
    return this.tables.map((t) => {
      const set = activeSet(t.cfg);
      const trieLens: number[] = [];
      for (let l = 0; l <= t.desc.maxLen; l++) if (t.counts[l]! > 0 && !set.hashLens.includes(l)) trieLens.push(l);
      return { direction: t.desc.direction, family: t.desc.family, hashLens: [...set.hashLens], trieLens, useTrie: set.useTrie };
    });
  }

  // ---------------------------------------------------------------- apply

  applyBatch(batch: OpBatch, meta?: SyncMeta): void {
    this.assertOpen();
    try {
      this.applyNow(batch, meta);
    } finally {
      this.releaseWindows();
    }
  }

  private applyNow(b: OpBatch, meta?: SyncMeta): void {
    this.validate(b, meta);
    this.checkCapacity(b);
    this.mapForBulk(b);
    let touchesEntries = false;
    for (let i = 0; i < b.length; i++) {
      if (b.kind[i] === OP.entryUpsert || b.kind[i] === OP.entryDelete) {
        touchesEntries = true;
        break;
      }
    }
    if (touchesEntries) this.meta.update({ dirty: true });
    try {
      this.runOps(b);
    } catch (e) {
      // A write failed half-way: the /24 indexes follow what the maps now hold.
      if (touchesEntries) for (const t of this.tables) if (t.touched) t.d24?.rebuild();
      throw e;
    }
    if (touchesEntries) this.storeCounts();
    if (touchesEntries || meta) this.meta.update({ dirty: false, ...(meta ? { revision: meta.revision, storeId: meta.storeId } : {}) });
  }

  /** The batch's ops, each run of one kind at a time, in order. */
  private runOps(b: OpBatch): void {
    const n = b.length;
    let i = 0;
    while (i < n) {
      const kind = b.kind[i]!;
      let j = i;
      while (j < n && b.kind[j] === kind) j++;
      switch (kind) {
        case OP.entryUpsert:
          this.upsertEntries(b, i, j);
          break;
        case OP.entryDelete:
          this.deleteEntries(b, i, j);
          break;
        case OP.journalUpsert:
          this.journal.upsert(b, i, j);
          break;
        case OP.journalDelete:
          this.journal.delete(b, i, j);
          break;
        case OP.counterReset:
          this.ruleCounters.reset(b, i, j);
          break;
      }
      i = j;
    }
  }

  /**
   * Maps whole hash tables (and the rule counters) up front when a batch
   * touches them often; a few ops map the pages they touch. The /24 indexes
   * are never mapped whole (direct24.ts: their windows).
   */
  private mapForBulk(b: OpBatch): void {
    const perTable = [0, 0, 0, 0];
    let resets = 0;
    for (let i = 0; i < b.length; i++) {
      const k = b.kind[i];
      if (k === OP.entryUpsert || k === OP.entryDelete) perTable[b.table[i]!]!++;
      else if (k === OP.counterReset) resets++;
    }
    for (const t of this.tables) {
      if (perTable[t.desc.id]! <= BULK_OPS) continue;
      t.tab.mapAll();
    }
    if (resets > BULK_OPS) this.ruleCounters.region.mapAll();
  }

  private validate(b: OpBatch, meta?: SyncMeta): void {
    const bad = (msg: string) => new DatapathError('apply', this.pinDir, E.EINVAL, msg);
    const slots = this.capacity.counterSlots;
    if (b.length > b.capacity) throw bad(`batch length ${b.length} exceeds its capacity ${b.capacity}`);
    for (let i = 0; i < b.length; i++) {
      const k = b.kind[i]!;
      if (k < OP.entryUpsert || k > OP.counterReset) throw bad(`op ${i}: unknown kind ${k}`);
      if (k === OP.entryUpsert || k === OP.entryDelete || k === OP.journalUpsert) {
        const t = b.table[i]!;
        if (t > 3) throw bad(`op ${i}: table ${t} out of 0..3`);
        const max = tableFamily(t) === 6 ? 128 : 32;
        if (b.len[i]! > max) throw bad(`op ${i}: prefix length ${b.len[i]} out of 0..${max}`);
      }
      if ((k === OP.entryUpsert || k === OP.journalUpsert || k === OP.counterReset) && b.slot[i]! >= slots) {
        throw bad(`op ${i}: counter slot ${b.slot[i]} out of 0..${slots - 1}`);
      }
      if (k === OP.journalUpsert) {
        const x = b.expire[i]!;
        if (!Number.isSafeInteger(x) || x < 0) throw bad(`op ${i}: expiry ${x} is not a Unix time in ms`);
      }
    }
    if (meta && Buffer.byteLength(meta.storeId, 'utf8') > FW_STORE_ID_MAX) {
      throw bad(`store id "${meta.storeId}" is longer than ${FW_STORE_ID_MAX} bytes`);
    }
  }

  /**
   * Refuses, before anything changes, a batch that would overfill a table at
   * any point of the order it runs in (an upsert of a new prefix takes room,
   * a delete of a present one frees it).
   */
  private checkCapacity(b: OpBatch): void {
    const cap = this.capacity.prefixesPerTable;
    const upserts = [0, 0, 0, 0];
    for (let i = 0; i < b.length; i++) if (b.kind[i] === OP.entryUpsert) upserts[b.table[i]!]!++;
    for (const t of this.tables) {
      const now = sum(t.counts);
      if (now + upserts[t.desc.id]! <= cap) continue; // even if every upsert were new and no delete freed anything
      // Close to full: replay the batch's entry ops on this table, exactly.
      const state = new Map<number | string, boolean>();
      let count = now;
      let peak = now;
      for (let i = 0; i < b.length; i++) {
        const k = b.kind[i];
        if ((k !== OP.entryUpsert && k !== OP.entryDelete) || b.table[i] !== t.desc.id) continue;
        const key = batchKey(b, i);
        let present = state.get(key);
        if (present === undefined) present = this.hasOp(t, b, i);
        if (k === OP.entryUpsert) {
          if (!present) {
            state.set(key, true);
            if (++count > peak) peak = count;
          }
        } else if (present) {
          state.set(key, false);
          count--;
        }
      }
      if (peak > cap) {
        throw new DatapathError(
          'apply',
          `${t.desc.direction} IPv${t.desc.family} table`,
          E.E2BIG,
          `would hold ${peak} prefixes, capacity is ${cap}; nothing was changed`,
        );
      }
    }
  }

  private inHash(t: TableState, len: number): boolean {
    return activeSet(t.cfg).hashLens.includes(len);
  }

  /** True if the table holds op i's prefix. */
  private hasOp(t: TableState, b: OpBatch, i: number): boolean {
    const len = b.len[i]!;
    if (t.counts[len] === 0) return false;
    if (this.inHash(t, len)) return t.desc.family === 4 ? t.tab.has4(len, b.addr4[i]!) : t.tab.has(len, b.addr6, i * 16);
    const key = Buffer.alloc(t.desc.keySize);
    writeKeyOp(key, 0, b, i);
    return trieExact(t.trie, key) !== null;
  }

  private upsertEntries(b: OpBatch, i0: number, j0: number): void {
    const perTable = [0, 0, 0, 0];
    for (let i = i0; i < j0; i++) perTable[b.table[i]!]!++;
    for (const t of this.tables) {
      const nt = perTable[t.desc.id]!;
      if (nt === 0) continue;
      const id = t.desc.id;
      t.touched = true;
      const set = activeSet(t.cfg);
      // Place lengths this batch populates for the first time.
      const newLens = new Map<number, number>();
      for (let i = i0; i < j0; i++) {
        if (b.table[i] !== id) continue;
        const len = b.len[i]!;
        if (t.counts[len] === 0 && !set.hashLens.includes(len)) newLens.set(len, (newLens.get(len) ?? 0) + 1);
      }
      prepareD24(t, b, i0, j0); // before this batch adds any entry longer than /24
      const placement = placeNewLengths(set.hashLens, newLens, this.maxHashLengths);
      const hashLens = new Set([...set.hashLens, ...placement.toHash]);

      const ks = t.desc.keySize;
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
      const v4 = t.desc.family === 4;
      /** IPv4: new entries longer than /24 (masked addresses). */
      const freshLonger: number[] = [];
      for (let i = i0; i < j0; i++) {
        if (b.table[i] !== id) continue;
        const len = b.len[i]!;
        const attrs = b.attrs[i]!;
        if (inHashLen[len]) {
          // The hash: one atomic store per entry through the mapping (it says whether the prefix was new).
          const fresh = v4 ? t.tab.upsert4(len, b.addr4[i]!, attrs, b.slot[i]!) : t.tab.upsert(len, b.addr6, i * 16, attrs, b.slot[i]!);
          if (fresh) {
            t.counts[len]!++;
            if (v4 && len > 24) freshLonger.push(maskedAddr4(b.addr4[i]!, len));
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
      this.insertBatch(t, t.trie, toTrie.keys, toTrie.vals, toTrie.lens, toTrie.n);
      for (const s of single) {
        const errno = t.trie.tryUpdate(s.key, s.val, BPF_NOEXIST);
        if (errno === 0) {
          t.counts[s.len]!++;
          if (s.len > 24) freshLonger.push(keyAddr4(s.key, 0));
        } else if (errno === E.EEXIST) t.trie.update(s.key, s.val, BPF_EXIST);
        else
          throw new DatapathError(
            'update map',
            t.trie.name,
            errno,
            errno === E.E2BIG ? `map is full (${t.trie.maxEntries} entries)` : undefined,
          );
      }
      // The /24 index after the entries are in: each entry of length <= 24 takes its range, a new longer one sets LONGER.
      const d24 = t.d24;
      if (d24) {
        for (let k = 0; k < toTrie.n; k++) if (toTrie.lens[k]! > 24) freshLonger.push(keyAddr4(toTrie.keys, k * ks));
        d24.addLongerAll(Uint32Array.from(freshLonger));
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
      const next: LenSet = { hashLens: mergeDesc(set.hashLens, placement.toHash), useTrie: set.useTrie || this.trieCount(t, hashLens) > 0 };
      if (!sameSet(next, set)) this.publish(t, next);
    }
  }

  /** Batch insert of trie keys of fresh lengths (none can exist yet). */
  private insertBatch(t: TableState, m: BpfMap, keys: Buffer, vals: Buffer, lens: Uint8Array, n: number): void {
    const ks = m.keySize;
    const vs = LAYOUT.fw_entry.size;
    const off = 0;
    while (off < n) {
      const res = m.updateBatch(keys.subarray(off * ks), vals.subarray(off * vs), n - off);
      for (let i = off; i < off + res.done; i++) t.counts[lens[i]!]!++;
      if (res.errno === 0) break;
      // Report the failing element; earlier ones are in (counted above).
      throw new DatapathError(
        'update batch of map',
        m.name,
        res.errno,
        res.errno === E.E2BIG ? `map is full (${m.maxEntries} entries); ${off + res.done} of ${n} written` : undefined,
      );
    }
  }

  private deleteEntries(b: OpBatch, i0: number, j0: number): void {
    const perTable = [0, 0, 0, 0];
    for (let i = i0; i < j0; i++) perTable[b.table[i]!]!++;
    for (const t of this.tables) {
      const nt = perTable[t.desc.id]!;
      if (nt === 0) continue;
      const id = t.desc.id;
      t.touched = true;
      const set = activeSet(t.cfg);
      prepareD24(t, b, i0, j0); // before this batch removes any entry longer than /24
      const inHashLen = new Uint8Array(FW_LEN_SLOTS);
      for (const l of set.hashLens) inHashLen[l] = 1;
      const ks = t.desc.keySize;
      const perLen = new Map<number, number>();
      const h: number[] = [];
      const tr = { keys: Buffer.alloc(nt * ks), lens: new Uint8Array(nt), n: 0 };
      for (let i = i0; i < j0; i++) {
        if (b.table[i] !== id) continue;
        const len = b.len[i]!;
        if (t.counts[len] === 0) continue; // nothing of that length: absent
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
      for (const [len, n] of perLen) if (t.counts[len]! <= n) emptied.add(len);
      const hashAfter = set.hashLens.filter((l) => !emptied.has(l));
      let trieAfter = 0;
      for (let l = trieFloor(t); l <= t.desc.maxLen; l++) if (t.counts[l]! > 0 && !set.hashLens.includes(l) && !emptied.has(l)) trieAfter++;
      const before: LenSet = { hashLens: hashAfter, useTrie: set.useTrie && trieAfter > 0 };
      if (!sameSet(before, set)) this.publish(t, before);

      const v4 = t.desc.family === 4;
      /** IPv4: deleted entries longer than /24 (masked addresses). */
      const goneLonger: number[] = [];
      for (const i of h) {
        const len = b.len[i]!;
        if (v4 ? t.tab.delete4(len, b.addr4[i]!) : t.tab.delete(len, b.addr6, i * 16)) {
          t.counts[len]!--;
          if (v4 && len > 24) goneLonger.push(maskedAddr4(b.addr4[i]!, len));
        }
      }
      // set = the lengths in the hash before this delete (some may be unpublished by now).
      if (h.length > 0 && set.hashLens.every((l) => t.counts[l] === 0)) t.tab.clearFlagsOfEmptyTable();
      t.trie.deleteMany(tr.keys, tr.n, (i) => {
        t.counts[tr.lens[i]!]!--;
        if (v4 && tr.lens[i]! > 24) goneLonger.push(keyAddr4(tr.keys, i * ks));
      });
      // The /24 index once the entries are gone: a deleted entry's /24s go to what covers them now.
      const d24 = t.d24;
      if (d24) {
        d24.removeLongerAll(Uint32Array.from(goneLonger));
        const p = shortOps(b, i0, j0, id);
        const cover = new Uint32Array(p.n);
        for (let k = 0; k < p.n; k++) cover[k] = this.cover4(t, p.len[k]!, p.a[k]!, inHashLen);
        d24.unpaintAll(p.n, p.len, p.a, cover);
      }

      // A delete of an absent key leaves its length populated: publish it again.
      const cur = activeSet(t.cfg);
      const keep = set.hashLens.filter((l) => t.counts[l]! > 0);
      const after: LenSet = { hashLens: keep, useTrie: this.trieCount(t, new Set(keep)) > 0 };
      if (!sameSet(after, cur)) this.publish(t, after);
    }
  }

  /**
   * The /24 index word of the longest entry shorter than len that covers a
   * (0: none). inHashLen: the lengths whose entries live in the hash (as
   * before the batch: a length never moves while it has entries, but the one
   * a batch's deletes may empty is unpublished before them).
   */
  private cover4(t: TableState, len: number, a: number, inHashLen: Uint8Array): number {
    const key = this.coverKey;
    const bytes = key.subarray(4);
    for (let l = len - 1; l >= 0; l--) {
      if (t.counts[l] === 0) continue;
      key.writeUInt32LE(l, 0);
      key.writeUInt32BE(maskedAddr4(a, l), 4);
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

  /** Trie entries the programs look up: of lengths outside hashLens, and (IPv4) longer than /24. */
  private trieCount(t: TableState, hashLens: ReadonlySet<number>): number {
    let n = 0;
    for (let l = trieFloor(t); l <= t.desc.maxLen; l++) if (!hashLens.has(l)) n += t.counts[l]!;
    return n;
  }

  /** Double-buffered config write: the programs never read a half-written set. */
  private publish(t: TableState, next: LenSet): void {
    t.cfg = this.configs.publish(t.desc.id, t.cfg, next);
  }

  /** Pins the per-length counts of the tables written since they were last pinned. */
  private storeCounts(): void {
    for (const t of this.tables) {
      if (!t.touched) continue;
      this.meta.writeCounts(t.desc.id, t.counts);
      t.touched = false;
    }
  }

  /** Rebuilds the per-length counts from the maps and republishes (after a crash mid-apply). */
  private recount(): void {
    for (const t of this.tables) {
      t.counts.fill(0);
      const set = activeSet(t.cfg);
      const trieLens = new Set<number>();
      const hashWithEntries = new Set<number>();
      t.tab.forEachRaw((len) => {
        t.counts[len]!++;
        hashWithEntries.add(len);
      });
      for (const { keys, count } of t.trie.lookupChunks()) {
        for (let i = 0; i < count; i++) {
          const len = keys.readUInt32LE(i * t.desc.keySize);
          if (len <= t.desc.maxLen) {
            t.counts[len]!++;
            trieLens.add(len);
          }
        }
      }
      // Every hash length with entries is published; the trie flag follows the trie.
      const next: LenSet = {
        hashLens: mergeDesc([...hashWithEntries], []).slice(0, FW_MAX_HASH_LENS),
        useTrie: [...trieLens].some((l) => l >= trieFloor(t)),
      };
      if (!sameSet(next, set)) this.publish(t, next);
      t.touched = true;
      const changed = t.d24?.rebuild() ?? 0;
      if (changed > 0) this.log?.warn({ table: t.desc.id, changed }, 'direct /24 index rebuilt from the entries');
    }
    this.storeCounts();
    this.meta.update({ dirty: false });
  }

  // ---------------------------------------------------------------- counters

  readRuleCountersInto(first: number, packets: BigUint64Array, bytes: BigUint64Array): number {
    this.assertOpen();
    return this.ruleCounters.readInto(first, packets, bytes, this.capacity.counterSlots, this.pinDir);
  }

  readInterfaceCounters(): InterfaceCounters[] {
    this.assertOpen();
    return this.ifCounters.read(new Map(this.attachments().map((a) => [a.ifindex, a.ifname])));
  }

  // ---------------------------------------------------------------- attach

  attach(ifname: string, opts: BpfAttachOptions = {}): InterfaceAttachment {
    this.assertOpen();
    const ifindex = ifindexOf(ifname);
    const xdpMode = this.links.attachXdp(ifname, ifindex, opts);
    // Verdict totals exist before the first packet (the fast path only looks up).
    this.ifCounters.ensure(ifindex);
    let egressMode: EgressAttachMode | 'none' = 'none';
    if (opts.egress !== false) egressMode = this.links.attachEgress(ifname, ifindex, opts.egressMode ?? 'auto');
    this.log?.info({ ifname, ifindex, xdpMode, egressMode }, 'attached');
    return { ifname, ifindex, xdpMode, egressMode };
  }

  detach(ifname: string): void {
    this.assertOpen();
    const ifindex = detachLinks(this.pinDir, ifname).get(ifname) ?? 0;
    if (ifindex) this.ifCounters.release(ifindex);
    this.log?.info({ ifname }, 'detached');
  }

  attachments(): InterfaceAttachment[] {
    this.assertOpen();
    return this.links.attachments();
  }

  // ---------------------------------------------------------------- lifecycle

  /** Detaches everything and removes every pin (the maps go with the last fd). */
  uninstall(): void {
    this.assertOpen();
    this.close();
    uninstallPins(this.pinDir, this.log);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // The views die with the mappings: nothing reads them after this (assertOpen).
    this.owned.close();
  }

  /** Program fds (tests and the bench run them with BPF_PROG_TEST_RUN). */
  programFd(which: 'xdp' | 'tc'): number {
    this.assertOpen();
    return which === 'xdp' ? this.loaded.progs.xdpFd : this.loaded.progs.tcFd;
  }

  testRun(which: 'xdp' | 'tc', frame: Buffer, opts: TestRunOptions = {}): TestRunResult {
    return progTestRun(this.programFd(which), frame, opts, which === 'xdp' ? PROG.XDP : PROG.TC);
  }

  /** The map fd of a fleetwall map (tests and the bench). */
  mapFd(name: MapName): number {
    return this.map(name).fd;
  }

  private map(name: MapName): BpfMap {
    const m = this.loaded.maps.get(name);
    if (!m) throw new DatapathError('find map', name, E.ENOENT);
    return m;
  }

  private assertOpen(): void {
    if (this.closed) throw new DatapathError('use datapath', this.pinDir, E.EBADF, 'the datapath was closed');
  }
}

// ---------------------------------------------------------------- helpers

/**
 * Ops on one table above which an apply maps the whole table (~0.3 ms for
 * 16 MB, ~1 ms for an IPv6 table) instead of a window per touched page (~5 us).
 */
const BULK_OPS = 64;

function sum(a: Uint32Array): number {
  let s = 0;
  for (const v of a) s += v;
  return s;
}

/** Chunk of the read iterators (ops per yielded batch). */
const READ_CHUNK = 16384;

/**
 * The shortest trie length the programs look up: IPv4 packets read the /24
 * index for every length up to 24, so the trie flag (`useTrie`) of an IPv4
 * table says whether the trie holds an entry longer than /24.
 */
function trieFloor(t: TableState): number {
  return t.d24 ? 25 : 0;
}

/** Counts the /24 index's longer entries (once per process) if ops [i0, j0) touch one of table t. */
function prepareD24(t: TableState, b: OpBatch, i0: number, j0: number): void {
  if (!t.d24) return;
  for (let i = i0; i < j0; i++) {
    if (b.table[i] === t.desc.id && b.len[i]! > 24) {
      t.d24.prepare();
      return;
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

/**
 * The trie's value for exactly this key, or null. A trie lookup is a
 * longest-prefix match: it also answers with a shorter entry that covers the
 * key (its value carries its own length).
 */
function trieExact(trie: BpfMap, key: Buffer): Buffer | null {
  const v = trie.lookup(key);
  return v && entryLen(v, 0) === keyLen(key, 0) ? v : null;
}

/** Every entry of an IPv4 table (hash, spill, trie) for its /24 index: length, masked address, slot, verdict. */
function forEachEntry4(tab: HashTable, trie: BpfMap, fn: (len: number, a: number, slot: number, verdict: number) => void): void {
  tab.forEachRaw((len, a4, _a6, _off, attrs, slot) => fn(len, a4, slot, slotVerdict(attrs)));
  const ks = trie.keySize;
  for (const { keys, values, count } of trie.lookupChunks()) {
    for (let i = 0; i < count; i++) {
      const v = i * trie.valueStride;
      fn(keyLen(keys, i * ks), keyAddr4(keys, i * ks), entrySlot(values, v), slotVerdict(entryAttrs(values, v)));
    }
  }
}
