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
// attach.ts the links (one detach path), owned.ts what a close releases.

import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { maskBytes, maskInto, type Prefix } from '../../../common/src/cidr.js';
import type { DefaultAction, RuleDirection } from '../../../common/src/policy.js';
import {
  FW_ABI_VERSION,
  FW_STORE_ID_MAX,
  FW_ACTION,
  FW_DEFAULT,
  FW_DIR,
  FW_IF_SLOTS,
  FW_IFS_FALLBACK,
  FW_LEN_SLOTS,
  FW_MAX_HASH_LENS,
  FW_MODE,
  LAYOUT,
  MAP,
  type MapName,
  PROG,
  TABLES,
  type TableCfg,
  type TableDesc,
  decodeMeta,
  decodeTableCfg,
  encodeMeta,
  encodeLenSet,
  encodeTableCfg,
  tableDirection,
  tableFamily,
  tableFor,
  type MetaValue,
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
  type VerdictTotals,
} from './datapath.js';
import { DatapathError } from './errors.js';
import { Direct24, d24Word } from './direct24.js';
import { HashTable, type TabValue } from './fwtab.js';
import { batchKey, entryAttrs, entryLen, entrySlot, keyAddr4, keyLen, maskedAddr4, writeEntryValue, writeKeyOp } from './key-encoding.js';
import { slotVerdict } from './slot-words.js';
import { mergeDesc, placeNewLengths } from './lengths.js';
import { type Mapping, MapRegion, mmapMap, possibleCpus, setLibbpfLogSink } from './libbpf.js';
import { DEFAULT_OBJ_DIR, type LoadedObjects, loadObjects } from './objects.js';
import { checkOptions, mapSizes } from './open-options.js';
import { Owned } from './owned.js';
import { DEFAULT_PIN_DIR, checkPinnedAbi, pinProgram, preparePinDir, removePins } from './pins.js';
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
  /** fw_rule_cnt ([cpu][slot]), mapped in windows while read or reset. */
  private readonly ruleCntRegion: MapRegion;
  private readonly ruleCnt: BigUint64Array;
  private readonly ruleCnt32: Uint32Array;
  /** fw_if_cnt (128 KB per CPU... small: mapped for the datapath's life). */
  private readonly ifCnt32: Uint32Array;
  private readonly ifCnt64: BigUint64Array;
  /** Regions mapped on demand (released after every public operation). */
  private readonly regions: MapRegion[] = [];
  /** fw_tblcfg, mapped in windows while used: the length sets are published with plain stores and a release flip. */
  private readonly tblcfgRegion: MapRegion;
  private readonly tblcfg: Uint8Array;
  private readonly tblcfg32: Uint32Array;
  private readonly ncpu: number;
  /** Counter slots per CPU in fw_rule_cnt. */
  private readonly ruleSlots: number;
  private meta: MetaValue;
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
    this.ncpu = possibleCpus();
    const { capacity: want, k } = checkOptions(opts.capacity, opts.maxHashLengths, this.ncpu, pinDir);
    this.loaded = loadObjects(resolve(opts.objDir ?? DEFAULT_OBJ_DIR), pinDir, mapSizes(want, this.ncpu), owned);
    this.links = new LinkAttacher(pinDir, this.loaded.progs, this.log);

    const ruleSlots = Math.floor(this.map(MAP.RULE_CNT).maxEntries / this.ncpu);
    this.ruleSlots = ruleSlots;
    const meta = decodeMeta(this.map(MAP.META).lookupU32(0)!);
    // fw_tblcfg through shared memory (the programs read the length sets there; a flip is one store).
    const tc = this.map(MAP.TBLCFG);
    this.tblcfgRegion = owned.add(new MapRegion(tc.fd, tc.maxEntries * CFG_STRIDE, tc.name));
    this.regions.push(this.tblcfgRegion);
    this.tblcfg = new Uint8Array(this.tblcfgRegion.buffer, 0, tc.maxEntries * CFG_STRIDE);
    this.tblcfg32 = new Uint32Array(this.tblcfgRegion.buffer, 0, (tc.maxEntries * CFG_STRIDE) / 4);
    const head = (id: number) => {
      this.tblcfgRegion.ensure(id * CFG_STRIDE, LAYOUT.fw_table_cfg.size);
      return Buffer.from(this.tblcfg.buffer, this.tblcfg.byteOffset + id * CFG_STRIDE, LAYOUT.fw_table_cfg.size);
    };
    const cfgs = TABLES.map((desc) => decodeTableCfg(head(desc.id)));
    if (meta.abiVersion === 0) {
      // Fresh (or a creation that died before it finished): initialise.
      const def = opts.defaultAction ?? 'pass';
      this.createdFresh = true;
      this.defaultAction = def;
      this.maxHashLengths = k;
      this.capacity = { prefixesPerTable: want.prefixesPerTable, counterSlots: ruleSlots };
      TABLES.forEach((desc, i) => {
        cfgs[i] = {
          active: 0,
          defaultAction: FW_DEFAULT[def],
          nbuckets: this.map(desc.tab).maxEntries,
          seed: randomInt(0, 2 ** 32),
          ruleSlots,
          sets: [emptySet(), emptySet()],
        };
        // No program reads a table before its datapath is created (nothing attached yet).
        this.tblcfgRegion.ensure(desc.id * CFG_STRIDE, CFG_STRIDE);
        this.tblcfg.fill(0, desc.id * CFG_STRIDE, (desc.id + 1) * CFG_STRIDE);
        this.tblcfg.set(encodeTableCfg(cfgs[i]!), desc.id * CFG_STRIDE);
      });
      this.meta = {
        revision: 0n,
        storeId: '',
        abiVersion: FW_ABI_VERSION,
        defaultAction: FW_DEFAULT[def],
        maxHashLens: k,
        dirty: false,
        createdUnixMs: BigInt(Date.now()),
        prefixesPerTable: want.prefixesPerTable,
        ruleSlots,
      };
    } else {
      const pinnedDefault: DefaultAction = meta.defaultAction === FW_DEFAULT.drop ? 'drop' : 'pass';
      if (opts.defaultAction !== undefined && opts.defaultAction !== pinnedDefault) {
        throw new DatapathError(
          'open pins',
          this.pinDir,
          E.EINVAL,
          `the pinned datapath was created with default action "${pinnedDefault}"; refusing to change it to "${opts.defaultAction}" (uninstall first to change it)`,
        );
      }
      this.createdFresh = false;
      this.defaultAction = pinnedDefault;
      this.maxHashLengths = meta.maxHashLens;
      this.meta = meta;
      this.capacity = { prefixesPerTable: meta.prefixesPerTable, counterSlots: meta.ruleSlots };
    }

    // Shared memory: the configs, the tables, the rule and interface counters.
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
    const rc = this.map(MAP.RULE_CNT);
    this.ruleCntRegion = owned.add(new MapRegion(rc.fd, rc.maxEntries * LAYOUT.fw_counter.size, rc.name));
    this.regions.push(this.ruleCntRegion);
    this.ruleCnt = new BigUint64Array(this.ruleCntRegion.buffer, 0, (this.ncpu * ruleSlots * LAYOUT.fw_counter.size) / 8);
    this.ruleCnt32 = new Uint32Array(this.ruleCntRegion.buffer, 0, (this.ncpu * ruleSlots * LAYOUT.fw_counter.size) / 4);
    const ic = this.map(MAP.IF_CNT);
    const ifCnt: Mapping = mmapMap(ic.fd, ic.maxEntries * LAYOUT.fw_if_slot.size, ic.name);
    owned.add({ close: () => ifCnt.unmap() });
    const icBytes = this.ncpu * FW_IF_SLOTS * LAYOUT.fw_if_slot.size;
    this.ifCnt32 = new Uint32Array(ifCnt.buffer, 0, icBytes / 4);
    this.ifCnt64 = new BigUint64Array(ifCnt.buffer, 0, icBytes / 8);
    this.tables = tables;

    if (this.createdFresh) {
      this.writeMeta();
      this.log?.info(
        { pinDir: this.pinDir, defaultAction: this.defaultAction, capacity: this.capacity, maxHashLengths: k },
        'datapath created',
      );
    } else {
      const stats = this.map(MAP.LENSTAT);
      for (const t of this.tables) {
        const v = stats.lookupU32(t.desc.id)!;
        for (let i = 0; i < FW_LEN_SLOTS; i++) t.counts[i] = v.readUInt32LE(i * 4);
      }
      if (meta.dirty) {
        this.log?.warn({ pinDir: this.pinDir }, 'previous apply did not finish; recounting prefix lengths');
        this.recount();
      }
      this.log?.info({ pinDir: this.pinDir, defaultAction: this.defaultAction, revision: meta.revision.toString() }, 'datapath reopened');
    }
    this.releaseWindows();
    pinProgram(pinDir, PROG.XDP, this.loaded.progs.xdpFd);
    pinProgram(pinDir, PROG.TC, this.loaded.progs.tcFd);
  }

  /** Unmaps every window of the tables, fw_tblcfg and the rule counters (nothing stays mapped at rest). */
  private releaseWindows(): void {
    for (const t of this.tables) t.tab.release();
    for (const r of this.regions) r.release();
  }

  /** Pages of the shared maps mapped into this process right now (0 at rest; tests). */
  mappedPages(): number {
    let n = 0;
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
    const m = this.map(MAP.JOURNAL);
    const F = LAYOUT.fw_journal_rule.fields;
    const out = new OpBatch(chunk);
    for (const { keys, values, count } of m.lookupChunks(chunk)) {
      for (let i = 0; i < count; i++) {
        if (out.full) {
          yield out;
          out.clear();
        }
        const o = i * m.valueStride;
        const v6 = values[o + F.family] === 6;
        const table = ((values[o + F.direction] === FW_DIR.egress ? 2 : 0) | (v6 ? 1 : 0)) as TableIndex;
        const attrs =
          (values[o + F.action] === FW_ACTION.allow ? ATTR_ALLOW : 0) | (values[o + F.mode] === FW_MODE.monitor ? ATTR_MONITOR : 0);
        const len = values.readUInt32LE(o + F.prefixlen);
        const slot = values.readUInt32LE(o + F.slot);
        const expire = Number(values.readBigUInt64LE(o + F.expire_unix_ms));
        const id = keys.readBigUInt64LE(i * 8);
        if (v6) out.journalUpsert(id, table, values, o + F.addr, len, attrs, slot, expire);
        else out.journalUpsert(id, table, values.readUInt32BE(o + F.addr), 0, len, attrs, slot, expire);
      }
    }
    if (out.length > 0) yield out;
  }

  readMeta(): SyncMeta {
    this.assertOpen();
    const m = decodeMeta(this.map(MAP.META).lookupU32(0)!);
    return { revision: m.revision, storeId: m.storeId };
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
      const set = activeSet(t);
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
    if (touchesEntries) {
      this.meta = { ...this.meta, dirty: true };
      this.writeMeta();
    }
    try {
      this.runOps(b);
    } catch (e) {
      // A write failed half-way: the /24 indexes follow what the maps now hold.
      if (touchesEntries) for (const t of this.tables) if (t.touched) t.d24?.rebuild();
      throw e;
    }
    if (touchesEntries) this.writeLenStats();
    this.meta = {
      ...this.meta,
      dirty: false,
      ...(meta ? { revision: meta.revision, storeId: meta.storeId } : {}),
    };
    if (touchesEntries || meta) this.writeMeta();
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
          this.upsertJournal(b, i, j);
          break;
        case OP.journalDelete:
          this.deleteJournal(b, i, j);
          break;
        case OP.counterReset:
          this.resetCounters(b, i, j);
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
    if (resets > BULK_OPS) this.ruleCntRegion.mapAll();
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
    return activeSet(t).hashLens.includes(len);
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
      const set = activeSet(t);
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
      const set = activeSet(t);
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
      const cur = activeSet(t);
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
    const cur = t.cfg.active & 1;
    const staged: TableCfg = { ...t.cfg, sets: [...t.cfg.sets] as [LenSet, LenSet] };
    staged.sets[cur ^ 1] = { hashLens: [...next.hashLens], useTrie: next.useTrie };
    const base = t.desc.id * CFG_STRIDE;
    this.tblcfgRegion.ensure(base, LAYOUT.fw_table_cfg.size);
    // The inactive set (no program reads it), then the flip (a seq-cst store: after the set's bytes).
    this.tblcfg.set(encodeLenSet(staged.sets[cur ^ 1]!), base + LAYOUT.fw_table_cfg.fields.set + (cur ^ 1) * LAYOUT.fw_lenset.size);
    Atomics.store(this.tblcfg32, (base + LAYOUT.fw_table_cfg.fields.active) / 4, cur ^ 1);
    staged.active = cur ^ 1;
    t.cfg = staged;
  }

  private upsertJournal(b: OpBatch, i0: number, j0: number): void {
    const m = this.map(MAP.JOURNAL);
    const vs = LAYOUT.fw_journal_rule.size;
    const size = Math.min(j0 - i0, WRITE_CHUNK);
    const keys = Buffer.alloc(size * 8);
    const vals = Buffer.alloc(size * vs);
    for (let s = i0; s < j0; s += size) {
      const n = Math.min(size, j0 - s);
      for (let k = 0; k < n; k++) {
        keys.writeBigUInt64LE(b.id[s + k]!, k * 8);
        writeJournalOp(vals, k * vs, b, s + k);
      }
      const res = m.updateBatch(keys, vals, n);
      if (res.errno !== 0) {
        throw new DatapathError(
          'update batch of map',
          m.name,
          res.errno,
          res.errno === E.E2BIG ? `journal is full (${m.maxEntries} rules)` : undefined,
        );
      }
    }
  }

  private deleteJournal(b: OpBatch, i0: number, j0: number): void {
    const size = Math.min(j0 - i0, WRITE_CHUNK);
    const keys = Buffer.alloc(size * 8);
    for (let s = i0; s < j0; s += size) {
      const n = Math.min(size, j0 - s);
      for (let k = 0; k < n; k++) keys.writeBigUInt64LE(b.id[s + k]!, k * 8);
      this.map(MAP.JOURNAL).deleteMany(keys, n);
    }
  }

  private resetCounters(b: OpBatch, i0: number, j0: number): void {
    const view = this.ruleCnt;
    const region = this.ruleCntRegion;
    for (let k = i0; k < j0; k++) {
      const slot = b.slot[k]!;
      for (let c = 0; c < this.ncpu; c++) {
        const i = (c * this.ruleSlots + slot) * 2;
        region.ensure(i * 8, 16);
        Atomics.store(view, i, 0n);
        Atomics.store(view, i + 1, 0n);
      }
    }
  }

  private writeLenStats(): void {
    const m = this.map(MAP.LENSTAT);
    for (const t of this.tables) {
      if (!t.touched) continue;
      const b = Buffer.alloc(LAYOUT.fw_lenstat.size);
      for (let i = 0; i < FW_LEN_SLOTS; i++) b.writeUInt32LE(t.counts[i]!, i * 4);
      m.updateU32(t.desc.id, b);
      t.touched = false;
    }
  }

  private writeMeta(): void {
    this.map(MAP.META).updateU32(0, encodeMeta(this.meta));
  }

  /** Rebuilds the per-length counts from the maps and republishes (after a crash mid-apply). */
  private recount(): void {
    for (const t of this.tables) {
      t.counts.fill(0);
      const set = activeSet(t);
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
    this.writeLenStats();
    this.meta = { ...this.meta, dirty: false };
    this.writeMeta();
  }

  // ---------------------------------------------------------------- counters

  readRuleCountersInto(first: number, packets: BigUint64Array, bytes: BigUint64Array): number {
    this.assertOpen();
    if (!Number.isInteger(first) || first < 0)
      throw new DatapathError('read rule counters', this.pinDir, E.EINVAL, `first slot ${first} is not a slot number`);
    const n = Math.max(0, Math.min(packets.length, bytes.length, this.capacity.counterSlots - first));
    packets.fill(0n, 0, n);
    bytes.fill(0n, 0, n);
    if (n === 0) return 0;
    const view = this.ruleCnt;
    const v32 = this.ruleCnt32;
    try {
      for (let c = 0; c < this.ncpu; c++) {
        const base = (c * this.ruleSlots + first) * 2;
        this.ruleCntRegion.ensure(base * 8, n * 16);
        for (let i = 0; i < n; i++) {
          // Most slots are zero on most CPUs: test the halves, no BigInt.
          const w = (base + i * 2) * 2;
          if (v32[w] === 0 && v32[w + 1] === 0) continue;
          packets[i] = packets[i]! + view[base + i * 2]!;
          bytes[i] = bytes[i]! + view[base + i * 2 + 1]!;
        }
      }
    } finally {
      this.ruleCntRegion.release();
    }
    return n;
  }

  readInterfaceCounters(): InterfaceCounters[] {
    this.assertOpen();
    const names = new Map<number, string>();
    for (const a of this.attachments()) names.set(a.ifindex, a.ifname);
    const byKey = new Map<string, InterfaceCounters>();
    const entry = (ifindex: number, dir: number): VerdictTotals => {
      const key = `${ifindex}/${dir}`;
      let e = byKey.get(key);
      if (!e) {
        e = {
          ifname: names.get(ifindex) ?? `if${ifindex}`,
          ifindex,
          direction: dir === FW_DIR.egress ? 'egress' : 'ingress',
          totals: { pass: zero(), drop: zero(), wouldDrop: zero() },
        };
        byKey.set(key, e);
      }
      return e.totals;
    };
    // Owned slots of fw_if_cnt (the owner is written to every CPU's copy).
    const v32 = this.ifCnt32;
    const v64 = this.ifCnt64;
    for (let s = 0; s < FW_IF_SLOTS; s++) {
      const ifindex = v32[s * IFS_WORDS32]!;
      if (ifindex === 0) continue;
      const totals = entry(ifindex, s & 1);
      for (let c = 0; c < this.ncpu; c++) {
        const b = (c * FW_IF_SLOTS + s) * IFS_WORDS64 + IFS_C64;
        totals.pass.packets += v64[b]!;
        totals.pass.bytes += v64[b + 1]!;
        totals.drop.packets += v64[b + 2]!;
        totals.drop.bytes += v64[b + 3]!;
        totals.wouldDrop.packets += v64[b + 4]!;
        totals.wouldDrop.bytes += v64[b + 5]!;
      }
    }
    // Interfaces whose slot another one owns.
    const m = this.map(MAP.IF_CNTX);
    const { keys, values, count } = m.lookupAll();
    for (let i = 0; i < count; i++) {
      const totals = entry(keys.readUInt32LE(i * 8), keys.readUInt32LE(i * 8 + 4));
      for (let c = 0; c < this.ncpu; c++) {
        const o = i * m.valueStride + c * LAYOUT.fw_verdict_cnt.size;
        add(totals.pass, values, o + LAYOUT.fw_verdict_cnt.fields.pass);
        add(totals.drop, values, o + LAYOUT.fw_verdict_cnt.fields.drop);
        add(totals.wouldDrop, values, o + LAYOUT.fw_verdict_cnt.fields.would_drop);
      }
    }
    return [...byKey.values()].sort((a, b) => a.ifindex - b.ifindex || a.direction.localeCompare(b.direction));
  }

  // ---------------------------------------------------------------- attach

  attach(ifname: string, opts: BpfAttachOptions = {}): InterfaceAttachment {
    this.assertOpen();
    const ifindex = ifindexOf(ifname);
    const xdpMode = this.links.attachXdp(ifname, ifindex, opts);
    // Verdict totals exist before the first packet (the fast path only looks up).
    this.ensureIfCounters(ifindex);
    let egressMode: EgressAttachMode | 'none' = 'none';
    if (opts.egress !== false) egressMode = this.links.attachEgress(ifname, ifindex, opts.egressMode ?? 'auto');
    this.log?.info({ ifname, ifindex, xdpMode, egressMode }, 'attached');
    return { ifname, ifindex, xdpMode, egressMode };
  }

  /**
   * Interface totals: the fw_if_cnt slot of (ifindex, direction) if free or
   * ours (zeroed, then the owner written to every CPU's copy), else an entry
   * in fw_if_cntx and the slot's fallback flag.
   */
  private ensureIfCounters(ifindex: number): void {
    const v32 = this.ifCnt32;
    const v64 = this.ifCnt64;
    for (const dir of [FW_DIR.ingress, FW_DIR.egress]) {
      const s = ifSlot(ifindex, dir);
      const owner = v32[s * IFS_WORDS32]!;
      if (owner === ifindex) continue;
      if (owner === 0) {
        for (let c = 0; c < this.ncpu; c++) {
          const b = (c * FW_IF_SLOTS + s) * IFS_WORDS64 + IFS_C64;
          for (let j = 0; j < 6; j++) Atomics.store(v64, b + j, 0n);
        }
        for (let c = 0; c < this.ncpu; c++) Atomics.store(v32, (c * FW_IF_SLOTS + s) * IFS_WORDS32, ifindex);
        continue;
      }
      const m = this.map(MAP.IF_CNTX);
      const key = Buffer.alloc(8);
      key.writeUInt32LE(ifindex, 0);
      key.writeUInt32LE(dir, 4);
      const errno = m.tryUpdate(key, Buffer.alloc(m.valueStride), BPF_NOEXIST);
      if (errno !== 0 && errno !== E.EEXIST) throw new DatapathError('create interface counters in', m.name, errno);
      for (let c = 0; c < this.ncpu; c++) Atomics.or(v32, (c * FW_IF_SLOTS + s) * IFS_WORDS32 + 1, FW_IFS_FALLBACK);
    }
  }

  /** Frees the interface's fw_if_cnt slots (or removes its fw_if_cntx entries). */
  private releaseIfCounters(ifindex: number): void {
    const v32 = this.ifCnt32;
    const v64 = this.ifCnt64;
    const m = this.map(MAP.IF_CNTX);
    for (const dir of [FW_DIR.ingress, FW_DIR.egress]) {
      const s = ifSlot(ifindex, dir);
      if (v32[s * IFS_WORDS32] === ifindex) {
        for (let c = 0; c < this.ncpu; c++) Atomics.store(v32, (c * FW_IF_SLOTS + s) * IFS_WORDS32, 0);
        for (let c = 0; c < this.ncpu; c++) {
          const b = (c * FW_IF_SLOTS + s) * IFS_WORDS64 + IFS_C64;
          for (let j = 0; j < 6; j++) Atomics.store(v64, b + j, 0n);
        }
      }
      const key = Buffer.alloc(8);
      key.writeUInt32LE(ifindex, 0);
      key.writeUInt32LE(dir, 4);
      m.delete(key);
    }
  }

  detach(ifname: string): void {
    this.assertOpen();
    const ifindex = detachLinks(this.pinDir, ifname).get(ifname) ?? 0;
    if (ifindex) this.releaseIfCounters(ifindex);
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

/** Bytes between fw_tblcfg values in its mapping. */
const CFG_STRIDE = Math.ceil(LAYOUT.fw_table_cfg.size / 8) * 8;

// fw_if_slot in u32 / u64 words; the counters start at u64 word 2.
const IFS_WORDS32 = LAYOUT.fw_if_slot.size / 4;
const IFS_WORDS64 = LAYOUT.fw_if_slot.size / 8;
const IFS_C64 = LAYOUT.fw_if_slot.fields.c / 8;

/** fw_if_cnt slot of an interface and direction (fw_decide). */
function ifSlot(ifindex: number, dir: number): number {
  return ((ifindex & (FW_IF_SLOTS / 2 - 1)) << 1) | dir;
}

function emptySet(): LenSet {
  return { hashLens: [], useTrie: false };
}

function activeSet(t: TableState): LenSet {
  return t.cfg.sets[t.cfg.active & 1]!;
}

function sameSet(a: LenSet, b: LenSet): boolean {
  return a.useTrie === b.useTrie && a.hashLens.length === b.hashLens.length && a.hashLens.every((l, i) => l === b.hashLens[i]);
}

function sum(a: Uint32Array): number {
  let s = 0;
  for (const v of a) s += v;
  return s;
}

function zero() {
  return { packets: 0n, bytes: 0n };
}

function add(c: { packets: bigint; bytes: bigint }, b: Buffer, off: number): void {
  c.packets += b.readBigUInt64LE(off);
  c.bytes += b.readBigUInt64LE(off + 8);
}

/** Chunk of the read iterators (ops per yielded batch). */
const READ_CHUNK = 16384;
/** Elements per batch syscall when writing the journal. */
const WRITE_CHUNK = 16384;

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

/** fw_journal_rule of journal.upsert op i at `off` (address masked). */
function writeJournalOp(v: Buffer, off: number, b: OpBatch, i: number): void {
  const F = LAYOUT.fw_journal_rule.fields;
  v.fill(0, off, off + LAYOUT.fw_journal_rule.size);
  const table = b.table[i]!;
  const len = b.len[i]!;
  v.writeUInt32LE(len, off + F.prefixlen);
  const family = tableFamily(table);
  if (family === 4) v.writeUInt32BE(maskedAddr4(b.addr4[i]!, len), off + F.addr);
  else maskInto(v, off + F.addr, b.addr6, i * 16, 16, len);
  v[off + F.family] = family;
  v[off + F.direction] = FW_DIR[tableDirection(table)];
  v[off + F.action] = (b.attrs[i]! & ATTR_ALLOW) !== 0 ? FW_ACTION.allow : FW_ACTION.deny;
  v[off + F.mode] = (b.attrs[i]! & ATTR_MONITOR) !== 0 ? FW_MODE.monitor : FW_MODE.enforce;
  v.writeUInt32LE(b.slot[i]!, off + F.slot);
  v.writeBigUInt64LE(BigInt(b.expire[i]!), off + F.expire_unix_ms);
}
