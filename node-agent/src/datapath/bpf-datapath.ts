// The real Datapath: libbpf over koffi, maps/programs/links pinned under
// pinDir. See datapath.ts for the contract and bpf/README.md for the layout.
//
//   const dp = openDatapath({ pinDir: '/sys/fs/bpf/fleetwall', logger });
//   dp.attach('eth0');                      // XDP ingress + TC egress, pinned links
//   dp.apply([{ kind: 'entry.upsert', entry }], { revision: 7n, storeId });
//   dp.close();                             // enforcement stays in place
//
// Opening again reuses every pin: nothing is detached or flushed, and the
// default action stored with the pins is kept (a different one is refused).

import { randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Prefix } from '../../../common/src/cidr.js';
import type { DefaultAction, RuleDirection } from '../../../common/src/policy.js';
import {
  FW_ABI_VERSION,
  FW_DEFAULT,
  FW_DIR,
  FW_IF_SLOTS,
  FW_IFS_FALLBACK,
  FW_LEN_SLOTS,
  FW_MAX_HASH_LENS,
  FW_MAX_RULE_SLOTS,
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
  TABLE_CFG_HEAD,
  readEntry,
  readJournalRule,
  tableFor,
  writeEntry,
  writeJournalRule,
  type MetaValue,
  type LenSet,
} from './abi.js';
import { BpfMap, mapInfoByFd } from './bpf-map.js';
import { type LoadedObject, loadObject } from './bpf-object.js';
import type {
  AttachOptions,
  Datapath,
  DatapathCapacity,
  DatapathOptions,
  EgressAttachMode,
  InterfaceAttachment,
  InterfaceCounters,
  JournalRule,
  KernelEntry,
  MapOp,
  SyncMeta,
  TableUsage,
  VerdictTotals,
  XdpAttachMode,
} from './datapath.js';
import { DatapathError } from './errors.js';
import { HashTable, bucketsFor, spillSizeFor } from './fwtab.js';
import { mergeDesc, placeNewLengths } from './lengths.js';
import {
  BPF_EXIST,
  BPF_NOEXIST,
  BPF_TCX_EGRESS,
  BPF_XDP,
  XDP_ATTACHED,
  XDP_FLAGS_DRV_MODE,
  XDP_FLAGS_SKB_MODE,
  type Mapping,
  MapRegion,
  check,
  closeFd,
  lastErrno,
  mmapMap,
  possibleCpus,
  raw,
  setLibbpfLogSink,
} from './libbpf.js';
import {
  clsactAttach,
  clsactDetach,
  clsactQuery,
  detachXdpLinkOf,
  linkCreate,
  linkInfo,
  progInfo,
  progName,
  xdpQuery,
} from './links.js';
import { type TestRunOptions, type TestRunResult, progTestRun } from './test-run.js';

const E = osConstants.errno;

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/fleetwall';
export const DEFAULT_OBJ_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bpf/obj');
export const DEFAULT_CAPACITY: DatapathCapacity = { prefixesPerTable: 1_048_576, counterSlots: 1_048_576 };
/** K: prefix lengths per table probed in the hash (see bpf/README.md for the measurement). */
export const DEFAULT_MAX_HASH_LENGTHS = 6;

export interface BpfDatapathOptions extends DatapathOptions {
  readonly logger?: Logger;
  /**
   * K, prefix lengths per table kept in the hash (0..8; 0 = a plain LPM trie).
   * Used only when the maps are created; reopened pins keep theirs.
   */
  readonly maxHashLengths?: number;
}

/** Attach options this implementation adds (all optional). */
export interface BpfAttachOptions extends AttachOptions {
  /** 'auto' (default): a TCX link where the kernel has it, else clsact. */
  readonly egressMode?: EgressAttachMode | 'auto';
}

const LINK_RE = /^(.+)-(xdp-native|xdp-generic|egress-tcx|egress-clsact)$/;

interface TableState {
  readonly desc: TableDesc;
  /** The hash lengths' entries (bucketed hash + spill). */
  readonly tab: HashTable;
  readonly trie: BpfMap;
  cfg: TableCfg;
  readonly counts: Uint32Array;
  touched: boolean;
}

interface LinkPin {
  readonly ifname: string;
  readonly kind: 'xdp-native' | 'xdp-generic' | 'egress-tcx' | 'egress-clsact';
  readonly path: string;
}

export function openDatapath(opts: BpfDatapathOptions): BpfDatapath {
  const pinDir = resolve(opts.pinDir || DEFAULT_PIN_DIR);
  const existed = existsSync(pinDir);
  try {
    return new BpfDatapath(opts);
  } catch (e) {
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
  private readonly objects: LoadedObject[] = [];
  private readonly maps = new Map<MapName, BpfMap>();
  private readonly tables: TableState[];
  /** fw_rule_cnt ([cpu][slot]), mapped in windows while read or reset. */
  private readonly ruleCntRegion: MapRegion;
  private readonly ruleCnt: BigUint64Array;
  /** fw_if_cnt (128 KB per CPU... small: mapped for the datapath's life). */
  private readonly ifCnt: Mapping;
  private readonly ifCnt32: Uint32Array;
  private readonly ifCnt64: BigUint64Array;
  private readonly mappings: Mapping[] = [];
  /** Regions mapped on demand (released after every public operation). */
  private readonly regions: MapRegion[] = [];
  /**
   * fw_tblcfg, mapped in windows while used: the length sets are published
   * with plain stores and a release flip; the IPv4 filters live here too.
   */
  private readonly tblcfgRegion: MapRegion;
  private readonly tblcfg: Uint8Array;
  private readonly tblcfg32: Uint32Array;
  private readonly ncpu: number;
  /** Counter slots per CPU in fw_rule_cnt. */
  private readonly ruleSlots: number;
  private readonly xdpFd: number;
  private readonly tcFd: number;
  private readonly xdpProgId: number;
  private readonly tcProgId: number;
  private meta: MetaValue;
  private closed = false;

  constructor(opts: BpfDatapathOptions) {
    this.log = opts.logger;
    this.pinDir = resolve(opts.pinDir || DEFAULT_PIN_DIR);
    const objDir = resolve(opts.objDir ?? DEFAULT_OBJ_DIR);
    if (this.log) {
      const log = this.log;
      setLibbpfLogSink((level, line) => (level === 'warn' ? log.warn({ libbpf: line }, 'libbpf') : log.debug({ libbpf: line }, 'libbpf')));
    }
    checkBpffs(this.pinDir);
    for (const d of [this.pinDir, join(this.pinDir, 'progs'), join(this.pinDir, 'links')]) {
      try {
        mkdirSync(d, { recursive: true });
      } catch (e) {
        throw new DatapathError('create pin dir', d, (e as NodeJS.ErrnoException).errno ? -(e as NodeJS.ErrnoException).errno! : E.EIO);
      }
    }

    const want: DatapathCapacity = { ...DEFAULT_CAPACITY, ...opts.capacity };
    for (const [k, v] of Object.entries(want)) {
      if (!Number.isInteger(v) || v < 1 || v > 2 ** 31) {
        throw new DatapathError('open datapath', this.pinDir, E.EINVAL, `capacity.${k} must be an integer in 1..2^31, got ${v}`);
      }
    }
    const k = opts.maxHashLengths ?? DEFAULT_MAX_HASH_LENGTHS;
    if (!Number.isInteger(k) || k < 0 || k > FW_MAX_HASH_LENS) {
      throw new DatapathError('open datapath', this.pinDir, E.EINVAL, `maxHashLengths must be 0..${FW_MAX_HASH_LENS}, got ${k}`);
    }
    if (want.counterSlots > FW_MAX_RULE_SLOTS) {
      throw new DatapathError('open datapath', this.pinDir, E.EINVAL, `capacity.counterSlots must be at most ${FW_MAX_RULE_SLOTS}, got ${want.counterSlots}`);
    }
    this.ncpu = possibleCpus();
    if (this.ncpu * want.counterSlots > 2 ** 31) {
      throw new DatapathError('open datapath', this.pinDir, E.EINVAL, `capacity.counterSlots x ${this.ncpu} CPUs must be at most 2^31, got ${want.counterSlots}`);
    }
    const sizes = new Map<string, number>();
    for (const t of TABLES) {
      sizes.set(t.tab, bucketsFor(t.family, want.prefixesPerTable));
      sizes.set(t.spill, spillSizeFor(want.prefixesPerTable));
      sizes.set(t.trie, want.prefixesPerTable);
    }
    sizes.set(MAP.RULE_CNT, this.ncpu * want.counterSlots);
    sizes.set(MAP.JOURNAL, want.counterSlots);
    sizes.set(MAP.IF_CNT, this.ncpu * FW_IF_SLOTS);
    sizes.set(MAP.IF_CNTX, 4096);

    const pinFilter = (name: string) => name.startsWith('fw_');
    try {
      this.objects.push(loadObject(join(objDir, 'xdp_ingress.bpf.o'), { pinDir: this.pinDir, pinFilter, sizes }));
      this.objects.push(loadObject(join(objDir, 'tc_egress.bpf.o'), { pinDir: this.pinDir, pinFilter, sizes }));
      const first = this.objects[0]!;
      for (const name of Object.values(MAP)) {
        const fd = first.mapFd(name);
        this.maps.set(name, new BpfMap(name, fd, mapInfoByFd(fd, name), false));
      }
      this.xdpFd = first.progFd(PROG.XDP);
      this.tcFd = this.objects[1]!.progFd(PROG.TC);
      this.xdpProgId = progInfo(this.xdpFd, PROG.XDP).id;
      this.tcProgId = progInfo(this.tcFd, PROG.TC).id;
    } catch (e) {
      for (const o of this.objects) o.close();
      throw e;
    }

    const ruleSlots = Math.floor(this.map(MAP.RULE_CNT).maxEntries / this.ncpu);
    this.ruleSlots = ruleSlots;
    const meta = decodeMeta(this.map(MAP.META).lookupU32(0)!);
    if (meta.abiVersion !== 0 && meta.abiVersion !== FW_ABI_VERSION) {
      this.closeObjects();
      throw new DatapathError(
        'open pins',
        this.pinDir,
        E.EINVAL,
        `pinned state has ABI version ${meta.abiVersion}, this build speaks ${FW_ABI_VERSION}; uninstall first`,
      );
    }
    // fw_tblcfg through shared memory (its values hold the 2 MB IPv4 filters: no copies through syscalls).
    try {
      const tc = this.map(MAP.TBLCFG);
      this.tblcfgRegion = new MapRegion(tc.fd, tc.maxEntries * CFG_STRIDE, tc.name);
      this.regions.push(this.tblcfgRegion);
      this.tblcfg = new Uint8Array(this.tblcfgRegion.buffer, 0, tc.maxEntries * CFG_STRIDE);
      this.tblcfg32 = new Uint32Array(this.tblcfgRegion.buffer, 0, (tc.maxEntries * CFG_STRIDE) / 4);
    } catch (e) {
      this.closeObjects();
      throw e;
    }
    const head = (id: number) => {
      this.tblcfgRegion.ensure(id * CFG_STRIDE, TABLE_CFG_HEAD);
      return Buffer.from(this.tblcfg.buffer, this.tblcfg.byteOffset + id * CFG_STRIDE, TABLE_CFG_HEAD);
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
        this.closeObjects();
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
    try {
      TABLES.forEach((desc, i) => {
        const cfg = cfgs[i]!;
        const at = (off: number, size: number) => this.tblcfg.subarray(desc.id * CFG_STRIDE + off, desc.id * CFG_STRIDE + off + size);
        const F = LAYOUT.fw_table_cfg.fields;
        const base = desc.id * CFG_STRIDE;
        const region = this.tblcfgRegion;
        const filters = desc.filters
          ? {
              f16: at(F.f16, LAYOUT.fw_f16.size),
              f24: at(F.f24, LAYOUT.fw_f24.size),
              ensureF16: (off: number, len: number) => region.ensure(base + F.f16 + off, len),
              ensureF24: (off: number, len: number) => region.ensure(base + F.f24 + off, len),
            }
          : null;
        const tab = new HashTable(desc.family, this.map(desc.tab), this.map(desc.spill), filters, cfg.seed, cfg.nbuckets);
        tables.push({ desc, tab, trie: this.map(desc.trie), cfg, counts: new Uint32Array(FW_LEN_SLOTS), touched: false });
      });
      const rc = this.map(MAP.RULE_CNT);
      this.ruleCntRegion = new MapRegion(rc.fd, rc.maxEntries * LAYOUT.fw_counter.size, rc.name);
      this.regions.push(this.ruleCntRegion);
      this.ruleCnt = new BigUint64Array(this.ruleCntRegion.buffer, 0, (this.ncpu * ruleSlots * LAYOUT.fw_counter.size) / 8);
      const ic = this.map(MAP.IF_CNT);
      this.ifCnt = mmapMap(ic.fd, ic.maxEntries * LAYOUT.fw_if_slot.size, ic.name);
      this.mappings.push(this.ifCnt);
      const icBytes = this.ncpu * FW_IF_SLOTS * LAYOUT.fw_if_slot.size;
      this.ifCnt32 = new Uint32Array(this.ifCnt.buffer, 0, icBytes / 4);
      this.ifCnt64 = new BigUint64Array(this.ifCnt.buffer, 0, icBytes / 8);
    } catch (e) {
      for (const t of tables) t.tab.close();
      this.closeObjects();
      throw e;
    }
    this.tables = tables;

    if (this.createdFresh) {
      this.writeMeta();
      this.log?.info({ pinDir: this.pinDir, defaultAction: this.defaultAction, capacity: this.capacity, maxHashLengths: k }, 'datapath created');
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
    this.pinPrograms();
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

  readEntries(): KernelEntry[] {
    try {
      return this.readEntriesNow();
    } finally {
      this.releaseWindows();
    }
  }

  private readEntriesNow(): KernelEntry[] {
    this.assertOpen();
    const out: KernelEntry[] = [];
    for (const t of this.tables) {
      const { direction, family } = t.desc;
      t.tab.forEach((len, bytes, v) => out.push({ direction, prefix: { family, bytes, len }, action: v.action, mode: v.mode, slot: v.slot }));
      const { keys, values, count } = t.trie.lookupAll();
      const ks = t.desc.keySize;
      for (let i = 0; i < count; i++) {
        const len = keys.readUInt32LE(i * ks);
        const bytes = new Uint8Array(keys.subarray(i * ks + 4, i * ks + 4 + t.desc.addrBytes));
        const v = readEntry(values, i * t.trie.valueStride);
        out.push({ direction, prefix: { family, bytes, len }, action: v.action, mode: v.mode, slot: v.slot });
      }
    }
    return out;
  }

  readJournal(): JournalRule[] {
    this.assertOpen();
    const m = this.map(MAP.JOURNAL);
    const { keys, values, count } = m.lookupAll();
    const out: JournalRule[] = [];
    for (let i = 0; i < count; i++) {
      const r = readJournalRule(values, i * m.valueStride);
      out.push({
        id: keys.readBigUInt64LE(i * 8),
        direction: r.direction,
        prefix: { family: r.family, bytes: r.addr, len: r.prefixlen },
        action: r.action,
        mode: r.mode,
        expireUnixMs: r.expireUnixMs,
        slot: r.slot,
      });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
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
    const bytes = maskedBytes(prefix);
    let e: { slot: number; action: KernelEntry['action']; mode: KernelEntry['mode'] } | null;
    if (this.inHash(t, prefix.len)) {
      e = t.tab.get(prefix.len, bytes);
    } else {
      const key = Buffer.alloc(t.desc.keySize);
      key.writeUInt32LE(prefix.len, 0);
      key.set(bytes, 4);
      const v = t.trie.lookup(key);
      e = v ? readEntry(v, 0) : null;
    }
    if (!e) return null;
    return { direction, prefix: { family: prefix.family, bytes, len: prefix.len }, action: e.action, mode: e.mode, slot: e.slot };
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

  apply(ops: readonly MapOp[], meta?: SyncMeta): void {
    try {
      this.applyNow(ops, meta);
    } finally {
      this.releaseWindows();
    }
  }

  private applyNow(ops: readonly MapOp[], meta?: SyncMeta): void {
    this.assertOpen();
    this.validate(ops, meta);
    this.checkCapacity(ops);
    this.mapForBulk(ops);
    const touchesEntries = ops.some((o) => o.kind === 'entry.upsert' || o.kind === 'entry.delete');
    if (touchesEntries) {
      this.meta = { ...this.meta, dirty: true };
      this.writeMeta();
    }
    let i = 0;
    while (i < ops.length) {
      const kind = ops[i]!.kind;
      let j = i;
      while (j < ops.length && ops[j]!.kind === kind) j++;
      const group = ops.slice(i, j);
      switch (kind) {
        case 'entry.upsert':
          this.upsertEntries(group as Array<Extract<MapOp, { kind: 'entry.upsert' }>>);
          break;
        case 'entry.delete':
          this.deleteEntries(group as Array<Extract<MapOp, { kind: 'entry.delete' }>>);
          break;
        case 'journal.upsert':
          this.upsertJournal(group as Array<Extract<MapOp, { kind: 'journal.upsert' }>>);
          break;
        case 'journal.delete':
          this.deleteJournal(group as Array<Extract<MapOp, { kind: 'journal.delete' }>>);
          break;
        case 'counter.reset':
          this.resetCounters(group as Array<Extract<MapOp, { kind: 'counter.reset' }>>);
          break;
      }
      i = j;
    }
    if (touchesEntries) this.writeLenStats();
    this.meta = {
      ...this.meta,
      dirty: false,
      ...(meta ? { revision: meta.revision, storeId: meta.storeId } : {}),
    };
    if (touchesEntries || meta) this.writeMeta();
  }

  /**
   * Maps whole tables (and their fw_tblcfg value, the counters) up front
   * when a batch touches them often; a few ops map the pages they touch.
   */
  private mapForBulk(ops: readonly MapOp[]): void {
    const perTable = [0, 0, 0, 0];
    let resets = 0;
    for (const op of ops) {
      if (op.kind === 'entry.upsert') perTable[tableFor(op.entry.direction, op.entry.prefix.family).id]!++;
      else if (op.kind === 'entry.delete') perTable[tableFor(op.direction, op.prefix.family).id]!++;
      else if (op.kind === 'counter.reset') resets++;
    }
    for (const t of this.tables) {
      if (perTable[t.desc.id]! <= BULK_OPS) continue;
      t.tab.mapAll();
      if (t.desc.filters) this.tblcfgRegion.ensure(t.desc.id * CFG_STRIDE, CFG_STRIDE);
    }
    if (resets > BULK_OPS) this.ruleCntRegion.mapAll();
  }

  private validate(ops: readonly MapOp[], meta?: SyncMeta): void {
    const bad = (msg: string) => new DatapathError('apply', this.pinDir, E.EINVAL, msg);
    const checkPrefix = (p: Prefix, where: number) => {
      const max = p.family === 4 ? 32 : p.family === 6 ? 128 : -1;
      if (max < 0) throw bad(`op ${where}: family must be 4 or 6`);
      if (p.bytes.length !== max / 8) throw bad(`op ${where}: IPv${p.family} prefix needs ${max / 8} bytes, got ${p.bytes.length}`);
      if (!Number.isInteger(p.len) || p.len < 0 || p.len > max) throw bad(`op ${where}: prefix length ${p.len} out of 0..${max}`);
    };
    const checkSlot = (slot: number, where: number) => {
      if (!Number.isInteger(slot) || slot < 0 || slot >= this.capacity.counterSlots) {
        throw bad(`op ${where}: counter slot ${slot} out of 0..${this.capacity.counterSlots - 1}`);
      }
    };
    ops.forEach((op, i) => {
      switch (op.kind) {
        case 'entry.upsert':
          checkPrefix(op.entry.prefix, i);
          checkSlot(op.entry.slot, i);
          break;
        case 'entry.delete':
          checkPrefix(op.prefix, i);
          break;
        case 'journal.upsert':
          checkPrefix(op.rule.prefix, i);
          checkSlot(op.rule.slot, i);
          if (op.rule.id < 0n || op.rule.id >= 2n ** 64n) throw bad(`op ${i}: rule id out of u64 range`);
          break;
        case 'journal.delete':
          break;
        case 'counter.reset':
          checkSlot(op.slot, i);
          break;
        default:
          throw bad(`op ${i}: unknown kind ${(op as { kind: string }).kind}`);
      }
    });
    if (meta && Buffer.byteLength(meta.storeId, 'utf8') > 16) throw bad(`store id "${meta.storeId}" is longer than 16 bytes`);
  }

  /** Refuses, before anything changes, a batch that would overfill a table. */
  private checkCapacity(ops: readonly MapOp[]): void {
    const counts = [0, 0, 0, 0];
    for (const op of ops) if (op.kind === 'entry.upsert') counts[tableFor(op.entry.direction, op.entry.prefix.family).id]!++;
    const upserts = new Map<TableState, Prefix[]>();
    for (const t of this.tables) {
      if (sum(t.counts) + counts[t.desc.id]! <= this.capacity.prefixesPerTable) continue;
      upserts.set(
        t,
        ops.flatMap((op) =>
          op.kind === 'entry.upsert' && tableFor(op.entry.direction, op.entry.prefix.family).id === t.desc.id ? [op.entry.prefix] : [],
        ),
      );
    }
    for (const [t, prefixes] of upserts) {
      const now = sum(t.counts);
      if (now + prefixes.length <= this.capacity.prefixesPerTable) continue;
      // Close to full: count exactly the prefixes that are new.
      const seen = new Set<string>();
      let fresh = 0;
      for (const p of prefixes) {
        const bytes = maskedBytes(p);
        const id = `${p.len}/${Buffer.from(bytes).toString('hex')}`;
        if (seen.has(id)) continue;
        seen.add(id);
        if (t.counts[p.len]! > 0 && this.has(t, p.len, bytes)) continue;
        fresh++;
      }
      if (now + fresh > this.capacity.prefixesPerTable) {
        throw new DatapathError(
          'apply',
          `${t.desc.direction} IPv${t.desc.family} table`,
          E.E2BIG,
          `would hold ${now + fresh} prefixes, capacity is ${this.capacity.prefixesPerTable}; nothing was changed`,
        );
      }
    }
  }

  private inHash(t: TableState, len: number): boolean {
    return activeSet(t).hashLens.includes(len);
  }

  private has(t: TableState, len: number, bytes: Uint8Array): boolean {
    if (this.inHash(t, len)) return t.tab.has(len, bytes);
    const key = Buffer.alloc(t.desc.keySize);
    key.writeUInt32LE(len, 0);
    key.set(bytes, 4);
    return t.trie.lookup(key) !== null;
  }

  private upsertEntries(group: ReadonlyArray<Extract<MapOp, { kind: 'entry.upsert' }>>): void {
    const byTable: Array<Array<Extract<MapOp, { kind: 'entry.upsert' }>['entry']>> = [[], [], [], []];
    for (const op of group) byTable[tableFor(op.entry.direction, op.entry.prefix.family).id]!.push(op.entry);
    for (const t of this.tables) {
      const entries = byTable[t.desc.id]!;
      if (entries.length === 0) continue;
      t.touched = true;
      const set = activeSet(t);
      // Place lengths this batch populates for the first time.
      const newLens = new Map<number, number>();
      for (const e of entries) {
        const len = e.prefix.len;
        if (t.counts[len] === 0 && !set.hashLens.includes(len)) newLens.set(len, (newLens.get(len) ?? 0) + 1);
      }
      const placement = placeNewLengths(set.hashLens, newLens, this.maxHashLengths);
      const hashLens = new Set([...set.hashLens, ...placement.toHash]);

      const ks = t.desc.keySize;
      const vs = LAYOUT.fw_entry.size;
      const inHashLen = new Uint8Array(FW_LEN_SLOTS);
      for (const l of hashLens) inHashLen[l] = 1;
      const isFresh = new Uint8Array(FW_LEN_SLOTS);
      for (const l of newLens.keys()) isFresh[l] = 1;
      const toTrie = { keys: Buffer.alloc(entries.length * ks), vals: Buffer.alloc(entries.length * vs), lens: new Uint8Array(entries.length), n: 0 };
      // Trie entries of already-populated lengths may replace an existing key:
      // they go one by one (NOEXIST, then EXIST) so the counts stay exact.
      const single: Array<{ m: BpfMap; key: Buffer; val: Buffer; len: number }> = [];
      for (const e of entries) {
        const len = e.prefix.len;
        if (inHashLen[len]) {
          // The hash: one atomic store per entry through the mapping (it says whether the prefix was new).
          if (t.tab.upsert(len, e.prefix.bytes, e)) t.counts[len]!++;
        } else if (isFresh[len]) {
          writeMaskedKey(toTrie.keys, toTrie.n * ks, e.prefix);
          writeEntry(toTrie.vals, toTrie.n * vs, e.slot, e.action, e.mode, len);
          toTrie.lens[toTrie.n] = len;
          toTrie.n++;
        } else {
          const key = Buffer.alloc(ks);
          writeMaskedKey(key, 0, e.prefix);
          const val = Buffer.alloc(vs);
          writeEntry(val, 0, e.slot, e.action, e.mode, len);
          single.push({ m: t.trie, key, val, len });
        }
      }
      this.insertBatch(t, t.trie, toTrie.keys, toTrie.vals, toTrie.lens, toTrie.n);
      for (const s of single) {
        const errno = s.m.tryUpdate(s.key, s.val, BPF_NOEXIST);
        if (errno === 0) t.counts[s.len]!++;
        else if (errno === E.EEXIST) s.m.update(s.key, s.val, BPF_EXIST);
        else throw new DatapathError('update map', s.m.name, errno, errno === E.E2BIG ? `map is full (${s.m.maxEntries} entries)` : undefined);
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
    let off = 0;
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

  private deleteEntries(group: ReadonlyArray<Extract<MapOp, { kind: 'entry.delete' }>>): void {
    const byTable: Prefix[][] = [[], [], [], []];
    for (const op of group) byTable[tableFor(op.direction, op.prefix.family).id]!.push(op.prefix);
    for (const t of this.tables) {
      const prefixes = byTable[t.desc.id]!;
      if (prefixes.length === 0) continue;
      t.touched = true;
      const set = activeSet(t);
      const ks = t.desc.keySize;
      const perLen = new Map<number, number>();
      const h: Prefix[] = [];
      const tr = { keys: Buffer.alloc(prefixes.length * ks), lens: new Uint8Array(prefixes.length), n: 0 };
      for (const p of prefixes) {
        if (t.counts[p.len] === 0) continue; // nothing of that length: absent
        perLen.set(p.len, (perLen.get(p.len) ?? 0) + 1);
        if (set.hashLens.includes(p.len)) {
          h.push(p);
          continue;
        }
        writeMaskedKey(tr.keys, tr.n * ks, p);
        tr.lens[tr.n] = p.len;
        tr.n++;
      }
      // Unpublish, before deleting, the lengths (and the trie) these deletes empty.
      const emptied = new Set<number>();
      for (const [len, n] of perLen) if (t.counts[len]! <= n) emptied.add(len);
      const hashAfter = set.hashLens.filter((l) => !emptied.has(l));
      let trieAfter = 0;
      for (let l = 0; l <= t.desc.maxLen; l++) if (t.counts[l]! > 0 && !set.hashLens.includes(l) && !emptied.has(l)) trieAfter++;
      const before: LenSet = { hashLens: hashAfter, useTrie: set.useTrie && trieAfter > 0 };
      if (!sameSet(before, set)) this.publish(t, before);

      for (const p of h) if (t.tab.delete(p.len, p.bytes)) t.counts[p.len]!--;
      // set = the lengths in the hash before this delete (some may be unpublished by now).
      if (h.length > 0 && set.hashLens.every((l) => t.counts[l] === 0)) t.tab.clearFlagsOfEmptyTable();
      t.trie.deleteMany(tr.keys, tr.n, (i) => t.counts[tr.lens[i]!]!--);

      // A delete of an absent key leaves its length populated: publish it again.
      const cur = activeSet(t);
      const keep = set.hashLens.filter((l) => t.counts[l]! > 0);
      const after: LenSet = { hashLens: keep, useTrie: this.trieCount(t, new Set(keep)) > 0 };
      if (!sameSet(after, cur)) this.publish(t, after);
    }
  }

  private trieCount(t: TableState, hashLens: ReadonlySet<number>): number {
    let n = 0;
    for (let l = 0; l <= t.desc.maxLen; l++) if (!hashLens.has(l)) n += t.counts[l]!;
    return n;
  }

  /** Double-buffered config write: the programs never read a half-written set. */
  private publish(t: TableState, next: LenSet): void {
    const cur = t.cfg.active & 1;
    const staged: TableCfg = { ...t.cfg, sets: [...t.cfg.sets] as [LenSet, LenSet] };
    staged.sets[cur ^ 1] = { hashLens: [...next.hashLens], useTrie: next.useTrie };
    const base = t.desc.id * CFG_STRIDE;
    this.tblcfgRegion.ensure(base, TABLE_CFG_HEAD);
    // The inactive set (no program reads it), then the flip (a seq-cst store: after the set's bytes).
    this.tblcfg.set(encodeLenSet(staged.sets[cur ^ 1]!), base + LAYOUT.fw_table_cfg.fields.set + (cur ^ 1) * LAYOUT.fw_lenset.size);
    Atomics.store(this.tblcfg32, (base + LAYOUT.fw_table_cfg.fields.active) / 4, cur ^ 1);
    staged.active = cur ^ 1;
    t.cfg = staged;
  }

  private upsertJournal(group: ReadonlyArray<Extract<MapOp, { kind: 'journal.upsert' }>>): void {
    const m = this.map(MAP.JOURNAL);
    const vs = LAYOUT.fw_journal_rule.size;
    const keys = Buffer.alloc(group.length * 8);
    const vals = Buffer.alloc(group.length * vs);
    group.forEach((op, i) => {
      keys.writeBigUInt64LE(op.rule.id, i * 8);
      writeJournalRule(vals, i * vs, { ...op.rule, prefix: { ...op.rule.prefix, bytes: maskedBytes(op.rule.prefix) } });
    });
    const res = m.updateBatch(keys, vals, group.length);
    if (res.errno !== 0) {
      throw new DatapathError('update batch of map', m.name, res.errno, res.errno === E.E2BIG ? `journal is full (${m.maxEntries} rules)` : undefined);
    }
  }

  private deleteJournal(group: ReadonlyArray<Extract<MapOp, { kind: 'journal.delete' }>>): void {
    const keys = Buffer.alloc(group.length * 8);
    group.forEach((op, i) => keys.writeBigUInt64LE(op.id, i * 8));
    this.map(MAP.JOURNAL).deleteMany(keys, group.length);
  }

  private resetCounters(group: ReadonlyArray<Extract<MapOp, { kind: 'counter.reset' }>>): void {
    const view = this.ruleCnt;
    const region = this.ruleCntRegion;
    for (const op of group) {
      for (let c = 0; c < this.ncpu; c++) {
        const i = (c * this.ruleSlots + op.slot) * 2;
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
      t.tab.forEach((len) => {
        t.counts[len]!++;
        hashWithEntries.add(len);
      });
      const { keys, count } = t.trie.lookupAll();
      for (let i = 0; i < count; i++) {
        const len = keys.readUInt32LE(i * t.desc.keySize);
        if (len <= t.desc.maxLen) {
          t.counts[len]!++;
          trieLens.add(len);
        }
      }
      // Every hash length with entries is published; the trie flag follows the trie.
      const next: LenSet = {
        hashLens: mergeDesc([...hashWithEntries], []).slice(0, FW_MAX_HASH_LENS),
        useTrie: trieLens.size > 0,
      };
      if (!sameSet(next, set)) this.publish(t, next);
      t.touched = true;
    }
    this.writeLenStats();
    this.meta = { ...this.meta, dirty: false };
    this.writeMeta();
  }

  // ---------------------------------------------------------------- counters

  readRuleCounters(upTo: number): { packets: BigUint64Array; bytes: BigUint64Array } {
    try {
      return this.readRuleCountersNow(upTo);
    } finally {
      this.releaseWindows();
    }
  }

  private readRuleCountersNow(upTo: number): { packets: BigUint64Array; bytes: BigUint64Array } {
    this.assertOpen();
    const n = Math.max(0, Math.min(upTo, this.capacity.counterSlots));
    const packets = new BigUint64Array(n);
    const bytes = new BigUint64Array(n);
    const view = this.ruleCnt;
    const slots = this.ruleSlots;
    for (let c = 0; c < this.ncpu; c++) {
      const base = c * slots * 2;
      this.ruleCntRegion.ensure(base * 8, n * 16);
      for (let i = 0; i < n; i++) {
        const p = view[base + i * 2]!;
        if (p === 0n) continue;
        packets[i] = packets[i]! + p;
        bytes[i] = bytes[i]! + view[base + i * 2 + 1]!;
      }
    }
    return { packets, bytes };
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
    const ifindex = raw.if_nametoindex(ifname) as number;
    if (!ifindex) throw new DatapathError('attach xdp', ifname, E.ENODEV, 'no such interface');
    const xdpMode = this.attachXdp(ifname, ifindex, opts);
    // Verdict totals exist before the first packet (the fast path only looks up).
    this.ensureIfCounters(ifindex);
    let egressMode: EgressAttachMode | 'none' = 'none';
    if (opts.egress !== false) egressMode = this.attachEgress(ifname, ifindex, opts.egressMode ?? 'auto');
    this.log?.info({ ifname, ifindex, xdpMode, egressMode }, 'attached');
    return { ifname, ifindex, xdpMode, egressMode };
  }

  private attachXdp(ifname: string, ifindex: number, opts: BpfAttachOptions): XdpAttachMode {
    // Ours already? (pinned link still on this interface)
    for (const pin of this.linkPins(ifname)) {
      if (!pin.kind.startsWith('xdp')) continue;
      const fd = raw.bpf_obj_get(pin.path) as number;
      if (fd < 0) {
        unlinkQuiet(pin.path);
        continue;
      }
      try {
        const info = linkInfo(fd, pin.path);
        if (info.ifindex === ifindex) {
          const wanted = opts.xdpMode ?? 'auto';
          const mode: XdpAttachMode = pin.kind === 'xdp-native' ? 'native' : 'generic';
          if (wanted === 'auto' || wanted === mode) {
            if (info.progId !== this.xdpProgId) {
              check(raw.bpf_link_update(fd, this.xdpFd, null) as number, 'update xdp program on', ifname);
            }
            return mode;
          }
          // A different mode was asked for: replace our own link.
          check(raw.bpf_link_detach(fd) as number, 'detach xdp', ifname);
        }
      } finally {
        closeFd(fd);
      }
      unlinkQuiet(pin.path); // defunct (interface gone) or being replaced
    }

    const cur = xdpQuery(ifindex, ifname);
    if (cur.mode !== XDP_ATTACHED.NONE) {
      const foreign = [cur.drvProgId, cur.skbProgId, cur.hwProgId, cur.progId].find((id) => id !== 0) ?? 0;
      if (!opts.replaceForeign) {
        throw new DatapathError(
          'attach xdp',
          ifname,
          E.EBUSY,
          `interface already has XDP program ${foreign} (${progName(foreign)}) that fleetwall did not attach; pass replaceForeign to replace it`,
        );
      }
      this.log?.warn({ ifname, progId: foreign, name: progName(foreign) }, 'replacing a foreign XDP program');
      const flags = cur.mode === XDP_ATTACHED.SKB ? XDP_FLAGS_SKB_MODE : cur.mode === XDP_ATTACHED.DRV ? XDP_FLAGS_DRV_MODE : 0;
      const r = raw.bpf_xdp_detach(ifindex, flags, null) as number;
      if (r < 0 && !detachXdpLinkOf(ifindex, foreign)) {
        throw new DatapathError('detach foreign xdp program from', ifname, lastErrno(r));
      }
    }

    const wanted = opts.xdpMode ?? 'auto';
    let mode: XdpAttachMode = wanted === 'generic' ? 'generic' : 'native';
    let res = linkCreate(this.xdpFd, ifindex, BPF_XDP, mode === 'native' ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE);
    if (res.fd < 0 && mode === 'native' && wanted === 'auto' && res.errno !== E.EBUSY && res.errno !== E.ENODEV) {
      this.log?.warn({ ifname, errno: res.errno }, 'native XDP not available on this interface; falling back to generic (slower) mode');
      mode = 'generic';
      res = linkCreate(this.xdpFd, ifindex, BPF_XDP, XDP_FLAGS_SKB_MODE);
    }
    if (res.fd < 0) {
      throw new DatapathError(
        'attach xdp',
        ifname,
        res.errno,
        res.errno === E.ENODEV ? 'no such interface' : res.errno === E.EBUSY ? 'another XDP program is attached' : undefined,
      );
    }
    this.pinLink(res.fd, join(this.pinDir, 'links', `${ifname}-xdp-${mode}`), ifname, 'xdp');
    return mode;
  }

  private attachEgress(ifname: string, ifindex: number, wanted: EgressAttachMode | 'auto'): EgressAttachMode {
    for (const pin of this.linkPins(ifname)) {
      if (pin.kind === 'egress-tcx') {
        const fd = raw.bpf_obj_get(pin.path) as number;
        if (fd >= 0) {
          try {
            const info = linkInfo(fd, pin.path);
            if (info.ifindex === ifindex && wanted !== 'clsact') {
              if (info.progId !== this.tcProgId) check(raw.bpf_link_update(fd, this.tcFd, null) as number, 'update tc program on', ifname);
              return 'tcx';
            }
            if (info.ifindex === ifindex) check(raw.bpf_link_detach(fd) as number, 'detach tc egress', ifname);
          } finally {
            closeFd(fd);
          }
        }
        unlinkQuiet(pin.path);
      } else if (pin.kind === 'egress-clsact') {
        if (wanted !== 'tcx' && clsactQuery(ifindex) !== 0) {
          clsactAttach(this.tcFd, ifindex, ifname); // replace keeps it current
          return 'clsact';
        }
        clsactDetach(ifindex, ifname);
        unlinkQuiet(pin.path);
      }
    }
    if (wanted !== 'clsact') {
      const res = linkCreate(this.tcFd, ifindex, BPF_TCX_EGRESS, 0);
      if (res.fd >= 0) {
        this.pinLink(res.fd, join(this.pinDir, 'links', `${ifname}-egress-tcx`), ifname, 'tc egress');
        return 'tcx';
      }
      if (wanted === 'tcx' || res.errno === E.ENODEV) throw new DatapathError('attach tc egress', ifname, res.errno, res.errno === E.ENODEV ? 'no such interface' : undefined);
      this.log?.warn({ ifname, errno: res.errno }, 'TCX links not available; falling back to a clsact filter');
    }
    clsactAttach(this.tcFd, ifindex, ifname);
    // No link to pin: pin the program as the record that uninstall must remove the filter.
    const marker = join(this.pinDir, 'links', `${ifname}-egress-clsact`);
    unlinkQuiet(marker);
    check(raw.bpf_obj_pin(this.tcFd, marker) as number, 'pin', marker);
    return 'clsact';
  }

  private pinLink(fd: number, path: string, ifname: string, what: string): void {
    try {
      unlinkQuiet(path);
      const r = raw.bpf_obj_pin(fd, path) as number;
      if (r < 0) {
        const errno = lastErrno(r);
        raw.bpf_link_detach(fd);
        throw new DatapathError(`pin ${what} link of`, `${ifname} at ${path}`, errno);
      }
    } finally {
      closeFd(fd);
    }
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
    let ifindex = 0;
    for (const pin of this.linkPins(ifname)) {
      if (pin.kind === 'egress-clsact') {
        const idx = raw.if_nametoindex(ifname) as number;
        if (idx) clsactDetach(idx, ifname);
      } else {
        const fd = raw.bpf_obj_get(pin.path) as number;
        if (fd >= 0) {
          try {
            const info = linkInfo(fd, pin.path);
            if (info.ifindex) ifindex = info.ifindex;
            if (info.ifindex) {
              const r = raw.bpf_link_detach(fd) as number;
              if (r < 0 && lastErrno(r) !== E.ENOLINK) check(r, `detach ${pin.kind.startsWith('xdp') ? 'xdp' : 'tc egress'}`, ifname);
            }
          } finally {
            closeFd(fd);
          }
        }
      }
      unlinkQuiet(pin.path);
    }
    if (ifindex) this.releaseIfCounters(ifindex);
    this.log?.info({ ifname }, 'detached');
  }

  attachments(): InterfaceAttachment[] {
    this.assertOpen();
    const byName = new Map<string, { ifindex: number; xdpMode: XdpAttachMode | 'none'; egressMode: EgressAttachMode | 'none' }>();
    for (const pin of this.linkPins()) {
      let a = byName.get(pin.ifname);
      if (!a) byName.set(pin.ifname, (a = { ifindex: 0, xdpMode: 'none', egressMode: 'none' }));
      if (pin.kind === 'egress-clsact') {
        a.egressMode = 'clsact';
        if (!a.ifindex) a.ifindex = (raw.if_nametoindex(pin.ifname) as number) || 0;
        continue;
      }
      const fd = raw.bpf_obj_get(pin.path) as number;
      if (fd < 0) continue;
      try {
        const info = linkInfo(fd, pin.path);
        if (!info.ifindex) continue; // defunct: the interface is gone
        a.ifindex = info.ifindex;
        if (pin.kind === 'xdp-native') a.xdpMode = 'native';
        else if (pin.kind === 'xdp-generic') a.xdpMode = 'generic';
        else a.egressMode = 'tcx';
      } finally {
        closeFd(fd);
      }
    }
    return [...byName.entries()]
      .filter(([, a]) => a.xdpMode !== 'none' || a.egressMode !== 'none')
      .map(([ifname, a]) => ({ ifname, ...a }))
      .sort((x, y) => x.ifname.localeCompare(y.ifname));
  }

  private linkPins(ifname?: string): LinkPin[] {
    const dir = join(this.pinDir, 'links');
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    const out: LinkPin[] = [];
    for (const n of names) {
      const m = LINK_RE.exec(n);
      if (!m) continue;
      if (ifname !== undefined && m[1] !== ifname) continue;
      out.push({ ifname: m[1]!, kind: m[2] as LinkPin['kind'], path: join(dir, n) });
    }
    return out;
  }

  // ---------------------------------------------------------------- lifecycle

  uninstall(): void {
    this.assertOpen();
    const names = new Set(this.linkPins().map((p) => p.ifname));
    for (const ifname of names) this.detach(ifname);
    this.closeObjects();
    this.closed = true;
    removePins(this.pinDir);
    this.log?.info({ pinDir: this.pinDir }, 'uninstalled');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeObjects();
  }

  /** Program fds (tests and the bench run them with BPF_PROG_TEST_RUN). */
  programFd(which: 'xdp' | 'tc'): number {
    this.assertOpen();
    return which === 'xdp' ? this.xdpFd : this.tcFd;
  }

  testRun(which: 'xdp' | 'tc', frame: Buffer, opts: TestRunOptions = {}): TestRunResult {
    return progTestRun(this.programFd(which), frame, opts, which === 'xdp' ? PROG.XDP : PROG.TC);
  }

  /** The map fd of a fleetwall map (tests and the bench). */
  mapFd(name: MapName): number {
    return this.map(name).fd;
  }

  private pinPrograms(): void {
    for (const [name, fd] of [
      [PROG.XDP, this.xdpFd],
      [PROG.TC, this.tcFd],
    ] as const) {
      const path = join(this.pinDir, 'progs', name);
      unlinkQuiet(path);
      check(raw.bpf_obj_pin(fd, path) as number, 'pin program', path);
    }
  }

  private map(name: MapName): BpfMap {
    const m = this.maps.get(name);
    if (!m) throw new DatapathError('find map', name, E.ENOENT);
    return m;
  }

  private closeObjects(): void {
    // The views die with the mappings: nothing reads them after this (assertOpen).
    for (const t of this.tables ?? []) t.tab.close();
    for (const r of this.regions.splice(0)) r.close();
    for (const m of this.mappings.splice(0)) m.unmap();
    for (const o of this.objects.splice(0)) o.close();
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

/** Writes a hash/trie key {prefixlen, address with host bits cleared} at `off`. */
function writeMaskedKey(buf: Buffer, off: number, p: Prefix): void {
  const b = p.bytes;
  const len = p.len;
  buf.writeUInt32LE(len, off);
  if (b.length === 4) {
    const v = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    buf.writeUInt32BE((v & mask) >>> 0, off + 4);
    return;
  }
  for (let i = 0; i < b.length; i++) {
    const keep = len - i * 8;
    buf[off + 4 + i] = keep >= 8 ? b[i]! : keep <= 0 ? 0 : b[i]! & ((0xff << (8 - keep)) & 0xff);
  }
}

/** The prefix's bytes with host bits cleared (a set host bit would never match a hash key). */
function maskedBytes(p: Prefix): Uint8Array {
  const out = new Uint8Array(p.bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, p.len - i * 8));
    if (keep < 8) out[i] = out[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  return out;
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* absent */
  }
}

/** Refuses a pin dir that is not on a bpf filesystem (pins would fail later, less clearly). */
function checkBpffs(pinDir: string): void {
  let best = '';
  let type = '';
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mnt, fstype] = line.split(' ');
    if (!mnt || !fstype) continue;
    const m = mnt.replace(/\\040/g, ' ');
    if ((pinDir === m || pinDir.startsWith(m.endsWith('/') ? m : `${m}/`)) && m.length >= best.length) {
      best = m;
      type = fstype;
    }
  }
  if (type !== 'bpf') {
    throw new DatapathError(
      'open pins',
      pinDir,
      E.ENOTSUP,
      `not on a bpf filesystem (it is on ${type || 'nothing'} at ${best || '/'}); mount one: mount -t bpf bpf /sys/fs/bpf`,
    );
  }
}

/** Removes every pin and folder under pinDir (uninstall). */
export function removePins(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else unlinkQuiet(p);
    }
    try {
      rmdirSync(d);
    } catch {
      /* not empty: something else pinned there */
    }
  };
  walk(pinDir);
}
