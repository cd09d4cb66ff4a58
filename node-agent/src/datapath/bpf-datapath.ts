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
//
// This class orchestrates; each part owns one concept: pins.ts (the pin dir,
// the ABI check), objects.ts (loading), prefix-table.ts (a table's entries),
// journal.ts, pinned-meta.ts, table-config.ts, rule-counters.ts,
// if-counters.ts, attach.ts (links, one detach path), apply-checks.ts.

import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Prefix } from '../../../common/src/cidr.js';
import type { DefaultAction, RuleDirection } from '../../../common/src/policy.js';
import { FW_DEFAULT, MAP, type MapName, PROG, TABLES, type TableCfg, tableIndex } from './abi.js';
import { checkCapacity, validateBatch } from './apply-checks.js';
import { type BpfAttachOptions, LinkAttacher, detachLinks, ifindexOf, uninstallPins } from './attach.js';
import type { BpfMap } from './bpf-map.js';
import {
  type Datapath,
  type DatapathCapacity,
  type DatapathOptions,
  type EgressAttachMode,
  type InterfaceAttachment,
  type InterfaceCounters,
  type KernelEntry,
  OP,
  OpBatch,
  type SyncMeta,
  type TableUsage,
} from './datapath.js';
import { DatapathError } from './errors.js';
import { IfCounters } from './if-counters.js';
import { Journal } from './journal.js';
import { possibleCpus, setLibbpfLogSink } from './libbpf.js';
import { DEFAULT_OBJ_DIR, type LoadedObjects, loadObjects } from './objects.js';
import { checkOptions, mapSizes } from './open-options.js';
import { Owned } from './owned.js';
import { PinnedMeta } from './pinned-meta.js';
import { DEFAULT_PIN_DIR, checkPinnedAbi, pinProgram, preparePinDir, removePins } from './pins.js';
import { PrefixTable, type TableLayout } from './prefix-table.js';
import { RuleCounters } from './rule-counters.js';
import { TableConfigs, emptySet } from './table-config.js';
import { type TestRunOptions, type TestRunResult, progTestRun } from './test-run.js';

export type { BpfAttachOptions } from './attach.js';
export { removePins, uninstallPins };

const E = osConstants.errno;

/** Chunk of the read iterators (ops per yielded batch). */
const READ_CHUNK = 16384;
/**
 * Ops on one table above which an apply maps the whole table (~0.3 ms for
 * 16 MB, ~1 ms for an IPv6 table) instead of a window per touched page (~5 us).
 */
const BULK_OPS = 64;

export interface BpfDatapathOptions extends DatapathOptions {
  readonly logger?: Logger;
  /**
   * K, prefix lengths per table kept in the hash (0..8; 0 = every length in the LPM trie, behind the IPv4 /24 index).
   * Used only when the maps are created; reopened pins keep theirs.
   */
  readonly maxHashLengths?: number;
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
  private readonly meta: PinnedMeta;
  private readonly configs: TableConfigs;
  private readonly tables: PrefixTable[];
  private readonly journal: Journal;
  private readonly ruleCounters: RuleCounters;
  private readonly ifCounters: IfCounters;
  private readonly links: LinkAttacher;
  private closed = false;

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
    this.tables = TABLES.map((desc) =>
      owned.add(new PrefixTable(desc, (name) => this.map(name), cfgs[desc.id]!, this.configs, this.maxHashLengths)),
    );
    this.journal = new Journal(this.map(MAP.JOURNAL));
    this.ifCounters = owned.add(new IfCounters(this.map(MAP.IF_CNT), this.map(MAP.IF_CNTX), ncpu));
    this.links = new LinkAttacher(pinDir, this.loaded.progs, this.log);

    if (this.createdFresh) {
      this.meta.create(FW_DEFAULT[this.defaultAction], want.k, want.capacity.prefixesPerTable, this.ruleCounters.slots);
      this.log?.info({ pinDir, defaultAction: this.defaultAction, capacity: this.capacity, maxHashLengths: want.k }, 'datapath created');
    } else {
      for (const t of this.tables) this.meta.readCounts(t.id, t.counts);
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
    for (const t of this.tables) t.release();
    this.configs.region.release();
    this.ruleCounters.region.release();
  }

  /** Pages of the shared maps mapped into this process right now (0 at rest; tests). */
  mappedPages(): number {
    let n = this.configs.region.mapped + this.ruleCounters.region.mapped;
    for (const t of this.tables) n += t.mappedPages;
    return n;
  }

  // ---------------------------------------------------------------- reads

  *readEntryChunks(chunk = READ_CHUNK): Generator<OpBatch> {
    this.assertOpen();
    const out = new OpBatch(chunk);
    try {
      for (const t of this.tables) {
        for (const _ of t.scan(out, chunk)) {
          yield out;
          out.clear();
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
      entries: t.entries(),
      capacity: this.capacity.prefixesPerTable,
    }));
  }

  /** The entry stored for exactly this prefix (one map lookup), or null. */
  lookupEntry(direction: RuleDirection, prefix: Prefix): KernelEntry | null {
    this.assertOpen();
    try {
      return this.tables[tableIndex(direction, prefix.family)]!.lookup(prefix);
    } finally {
      this.releaseWindows();
    }
  }

  /** Where each populated prefix length lives (for tests, the bench and debugging). */
  layout(): TableLayout[] {
    return this.tables.map((t) => t.layout());
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
    validateBatch(b, meta, this.capacity.counterSlots, this.pinDir);
    checkCapacity(this.tables, b, this.capacity.prefixesPerTable);
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
        case OP.entryDelete:
          this.entryOps(b, i, j, kind === OP.entryUpsert);
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

  /** A run [i0, j0) of entry upserts or deletes, table by table. */
  private entryOps(b: OpBatch, i0: number, j0: number, upsert: boolean): void {
    const perTable = new Array<number>(this.tables.length).fill(0);
    for (let i = i0; i < j0; i++) perTable[b.table[i]!]!++;
    for (const t of this.tables) {
      const n = perTable[t.id]!;
      if (n === 0) continue;
      if (upsert) t.upsert(b, i0, j0);
      else t.delete(b, i0, j0, n);
    }
  }

  /**
   * Maps whole hash tables (and the rule counters) up front when a batch
   * touches them often; a few ops map the pages they touch. The /24 indexes
   * are never mapped whole (direct24.ts: their windows).
   */
  private mapForBulk(b: OpBatch): void {
    const perTable = new Array<number>(this.tables.length).fill(0);
    let resets = 0;
    for (let i = 0; i < b.length; i++) {
      const k = b.kind[i];
      if (k === OP.entryUpsert || k === OP.entryDelete) perTable[b.table[i]!]!++;
      else if (k === OP.counterReset) resets++;
    }
    for (const t of this.tables) if (perTable[t.id]! > BULK_OPS) t.mapAll();
    if (resets > BULK_OPS) this.ruleCounters.region.mapAll();
  }

  /** Pins the per-length counts of the tables written since they were last pinned. */
  private storeCounts(): void {
    for (const t of this.tables) {
      if (!t.touched) continue;
      this.meta.writeCounts(t.id, t.counts);
      t.touched = false;
    }
  }

  /** Rebuilds the per-length counts and the /24 indexes from the maps (after a crash mid-apply). */
  private recount(): void {
    for (const t of this.tables) {
      const changed = t.recount();
      if (changed > 0) this.log?.warn({ table: t.id, changed }, 'direct /24 index rebuilt from the entries');
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
