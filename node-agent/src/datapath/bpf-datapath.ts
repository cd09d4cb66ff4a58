// The real Datapath: libbpf over koffi, maps/programs/links pinned under
// pinDir. See datapath.ts for the contract and bpf/README.md for the layout.
//
//   const dp = openDatapath({ pinDir: '/sys/fs/bpf/fleetwall', logger });
//   dp.attach('eth0');                      // XDP ingress + TC egress, pinned links
//   await dp.applyBatch(batch, { revision: 7n, storeId }); // batch: an OpBatch of ops
//   dp.close();                             // enforcement stays in place
//
// Opening again reuses every pin: nothing is detached or flushed, and the
// default action stored with the pins is kept (a different one is refused).
// The maps that follow the rules' size belong to a generation (gen-<n>/);
// an apply that needs more room than they have first swaps in a larger
// generation, and one that leaves them at a quarter or less swaps in a
// smaller one (sizing.ts, gen-state.ts, swap.ts). A swap's load runs on a
// worker thread (gen-swapper.ts): applies that fit the generation in force
// go on meanwhile; one that needs the new sizes waits for it.
//
// This class orchestrates; each part owns one concept: pins.ts (the pin dir,
// the ABI check), generation.ts (loading a generation), gen-state.ts (its
// tables, journal, counters), gen-swapper.ts (loading the next one off the
// event loop), swap.ts (swapping one in, finishing a swap a crash interrupted),
// gen-open.ts (the generation in force at open), prefix-table.ts (a table's entries), pinned-meta.ts,
// if-counters.ts, attach.ts (links, one detach path), apply-checks.ts,
// batch-writer.ts (a batch's ops into the generation in force), gen-resizer.ts
// (when the maps get other sizes: resize-policy.ts, gen-swapper.ts), kernel-memory.ts.

import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Prefix } from '../../../common/src/cidr.js';
import type { DefaultAction, RuleDirection } from '../../../common/src/policy.js';
import { FW_DEFAULT, GEN_MAPS, MAP, type MapName, TABLES, programNames, tableIndex } from './abi.js';
import { batchNeeds, checkCapacity, validateBatch } from './apply-checks.js';
import { type BpfAttachOptions, LinkAttacher, detachLinks, ifindexOf, uninstallPins } from './attach.js';
import { BpfMap } from './bpf-map.js';
import {
  type Datapath,
  type DatapathCapacity,
  type DatapathOptions,
  type EgressAttachMode,
  type InterfaceAttachment,
  type InterfaceCounters,
  type KernelEntry,
  type KernelMemory,
  OpBatch,
  type SyncMeta,
  type TableUsage,
} from './datapath.js';
import { DatapathError } from './errors.js';
import { GenState } from './gen-state.js';
import { firstConfigs, openFirstGeneration, pinnedSettings, reopenGeneration, sizesOf, takeOverLinks } from './gen-open.js';
import type { Generation } from './generation.js';
import { IfCounters } from './if-counters.js';
import { kernelMemory } from './kernel-memory.js';
import { possibleCpus, setLibbpfLogSink } from './libbpf.js';
import { DEFAULT_OBJ_DIR } from './objects.js';
import { DatapathEvents } from './event-source.js';
import { type PolicyMaps, policyMapsOf } from './policy-maps.js';
import { BpfKernelClock } from './kernel-clock.js';
import { checkOptions, checkRingBytes } from './open-options.js';
import { PinnedMeta, readPinnedMeta } from './pinned-meta.js';
import { DEFAULT_PIN_DIR, checkPinnedAbi, pinPrograms, preparePinDir, removePins } from './pins.js';
import type { TableLayout } from './prefix-table.js';
import type { GenSizes } from './sizing.js';
import type { SwapStep } from './swap.js';
import { GenResizer } from './gen-resizer.js';
import { recountAfterCrash, writeBatch } from './batch-writer.js';
import { type TestRunOptions, type TestRunResult, progTestRun } from './test-run.js';

export type { BpfAttachOptions } from './attach.js';
export type { SwapStep } from './swap.js';
export { removePins, uninstallPins };

const E = osConstants.errno;

/** Chunk of the read iterators (ops per yielded batch). */
const READ_CHUNK = 16384;
/** The maps pinned once at the top of the pin dir (every generation is bound to them). */
const SHARED_MAPS = (Object.values(MAP) as MapName[]).filter((m) => !GEN_MAPS.has(m));

export interface BpfDatapathOptions extends DatapathOptions {
  readonly logger?: Logger;
  /**
   * K, prefix lengths per table kept in the hash (0..8; 0 = every length in the LPM trie, behind the IPv4 /24 index).
   * Used only when the maps are created; reopened pins keep theirs.
   */
  readonly maxHashLengths?: number;
  /** Called after each step of a generation swap (tests stop the process at one). */
  readonly onSwapStep?: (step: SwapStep, gen: number) => void;
  /**
   * Sizes the maps keep at least (not pinned: give it at each open): a table's
   * hash sized for this many prefixes, the counters for this many slots.
   */
  readonly reserve?: Partial<DatapathCapacity>;
}

export function openDatapath(opts: BpfDatapathOptions): BpfDatapath {
  const pinDir = resolve(opts.pinDir || DEFAULT_PIN_DIR);
  const existed = existsSync(pinDir);
  // Pins of another ABI: say so before libbpf tries to reuse their maps.
  if (existed) checkPinnedAbi(pinDir);
  try {
    return new BpfDatapath(pinDir, opts);
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
  /** The programs carry the sampled drop events' code (opts.events absent or on), or none (events off: the _noev pair). */
  readonly eventCode: boolean;

  private readonly log: Logger | undefined;
  private readonly objDir: string;
  private readonly ncpu = possibleCpus();
  private readonly shared = new Map<MapName, BpfMap>();
  private readonly meta: PinnedMeta;
  private readonly ifCounters: IfCounters;
  /** The detection policies' maps (policy-maps.ts: fixed size, pinned outside the generations; unusable once closed). */
  readonly policies: PolicyMaps;
  /** The kernel's jiffies and HZ, the policies' windows' clock (kernel-clock.ts: fw_clock.bpf.o, loaded with the datapath). */
  private readonly clock: BpfKernelClock;
  private readonly links: LinkAttacher;
  private readonly ev: DatapathEvents;
  private readonly onSwapStep: BpfDatapathOptions['onSwapStep'];
  private readonly reserve: Partial<DatapathCapacity>;
  /** The generation in force and what is written through it. */
  private state: GenState;
  private sizes: GenSizes;
  /** When the maps get other sizes, and the swaps (gen-resizer.ts). */
  private readonly resizer: GenResizer;
  /** Settles when the last apply started has written its ops (applies write one at a time, in call order). */
  private turn: Promise<void> = Promise.resolve();
  private closed = false;

  /** Use openDatapath(): it checks the pins' ABI first and cleans up a failed first open. */
  constructor(pinDir: string, opts: BpfDatapathOptions) {
    this.log = opts.logger;
    this.pinDir = pinDir;
    this.objDir = resolve(opts.objDir ?? DEFAULT_OBJ_DIR);
    this.onSwapStep = opts.onSwapStep;
    this.reserve = opts.reserve ?? {};
    this.eventCode = opts.events?.enabled ?? true;
    if (this.log) {
      const log = this.log;
      setLibbpfLogSink((level, line) => (level === 'warn' ? log.warn({ libbpf: line }, 'libbpf') : log.debug({ libbpf: line }, 'libbpf')));
    }
    preparePinDir(pinDir);
    const want = checkOptions(opts.capacity, opts.maxHashLengths, pinDir);
    const pinnedMeta = readPinnedMeta(pinDir);
    this.createdFresh = pinnedMeta === null || pinnedMeta.abiVersion === 0;
    let gen: Generation | null = null;
    try {
      if (this.createdFresh) {
        // Fresh (or a creation that died before it finished): the first generation, at the least sizes.
        const ring = checkRingBytes(opts.eventRingBytes, pinDir);
        gen = openFirstGeneration(this.objDir, pinDir, want.capacity, this.reserve, this.ncpu, ring, this.eventCode);
      }
      for (const name of SHARED_MAPS) this.shared.set(name, BpfMap.fromPin(join(pinDir, name), name));
      this.meta = new PinnedMeta(this.shared.get(MAP.META)!, this.shared.get(MAP.LENSTAT)!);
      this.links = new LinkAttacher(pinDir, { events: this.eventCode, xdpFd: -1, tcFd: -1, xdpProgId: 0, tcProgId: 0 }, this.log);
      const settings = this.createdFresh
        ? { defaultAction: opts.defaultAction ?? 'pass', maxHashLengths: want.k, capacity: want.capacity }
        : pinnedSettings(this.meta.value, opts.defaultAction, pinDir);
      this.defaultAction = settings.defaultAction;
      this.maxHashLengths = settings.maxHashLengths;
      this.capacity = settings.capacity;
      if (!this.createdFresh) {
        const ctx = { pinDir, meta: this.meta, links: this.links, log: this.log, onStep: this.onSwapStep };
        gen = reopenGeneration(ctx, this.objDir, this.eventCode);
      }
      const counts = TABLES.map(() => new Uint32Array(129));
      const tries = TABLES.map((d) => this.shared.get(d.trie)!);
      if (this.createdFresh) {
        this.state = GenState.open(gen!, tries, counts, this.maxHashLengths, firstConfigs(gen!, this.defaultAction));
        this.sizes = gen!.sizes;
        this.meta.create(FW_DEFAULT[this.defaultAction], this.maxHashLengths, this.capacity.prefixesPerTable, this.capacity.counterSlots);
        this.log?.info({ pinDir, defaultAction: this.defaultAction, capacity: this.capacity, maxHashLengths: want.k }, 'datapath created');
      } else {
        for (const d of TABLES) this.meta.readCounts(d.id, counts[d.id]!);
        this.state = GenState.open(gen!, tries, counts, this.maxHashLengths);
        this.sizes = sizesOf(this.state);
        if (this.meta.value.dirty) {
          this.log?.warn({ pinDir }, 'previous apply did not finish; recounting prefix lengths');
          recountAfterCrash(this.state, this.meta, this.log);
        }
        this.log?.info(
          { pinDir, defaultAction: this.defaultAction, revision: this.meta.value.revision.toString(), gen: gen!.n },
          'datapath reopened',
        );
      }
      const evGeometry = () => ({ counters: this.state.gen.map(MAP.RULE_CNT), slots: this.sizes.slots, cpuRows: this.sizes.cpuRows });
      const evMaps = [this.shared.get(MAP.EV_CFG)!, this.shared.get(MAP.EVENTS)!, this.shared.get(MAP.EV_CPU)!] as const;
      this.ev = new DatapathEvents(...evMaps, evGeometry, this.eventCode);
      takeOverLinks(this.links, gen!);
      if (opts.events) this.ev.configure(opts.events);
      this.ifCounters = new IfCounters(this.shared.get(MAP.IF_CNT)!, this.shared.get(MAP.IF_CNTX)!, this.ncpu);
      this.clock = BpfKernelClock.open(this.objDir);
      this.policies = policyMapsOf((n) => this.shared.get(n), pinDir, this.clock);
      this.resizer = this.newResizer(tries);
      this.state.release();
      pinPrograms(pinDir, gen!.progs);
    } catch (e) {
      // biome-ignore lint/suspicious/noExplicitAny: a field set part-way through the constructor
      (this as any).state?.close();
      // biome-ignore lint/suspicious/noExplicitAny: a field set part-way through the constructor
      (this as any).clock?.close();
      gen?.close();
      for (const m of this.shared.values()) m.close();
      throw e;
    }
  }

  /** Pages of the shared maps mapped into this process right now (0 at rest; tests). */
  mappedPages(): number {
    return this.state.mappedPages;
  }

  // ---------------------------------------------------------------- reads

  *readEntryChunks(chunk = READ_CHUNK): Generator<OpBatch> {
    this.assertOpen();
    const out = new OpBatch(chunk);
    try {
      for (const t of this.state.tables) {
        for (const _ of t.scan(out, chunk)) {
          yield out;
          out.clear();
        }
      }
      if (out.length > 0) yield out;
    } finally {
      this.state.release();
    }
  }

  *readJournalChunks(chunk = READ_CHUNK): Generator<OpBatch> {
    this.assertOpen();
    yield* this.state.journal.chunks(chunk);
  }

  readMeta(): SyncMeta {
    this.assertOpen();
    return this.meta.readSync();
  }

  usage(): TableUsage[] {
    return this.state.tables.map((t) => ({
      direction: t.desc.direction,
      family: t.desc.family,
      entries: t.entries(),
      capacity: this.capacity.prefixesPerTable,
    }));
  }

  memory(): KernelMemory {
    this.assertOpen();
    try {
      return kernelMemory(this.state, this.shared, this.ncpu, this.resizer.stats);
    } finally {
      this.state.release();
    }
  }

  /** The entry stored for exactly this prefix (one map lookup), or null. */
  lookupEntry(direction: RuleDirection, prefix: Prefix): KernelEntry | null {
    this.assertOpen();
    try {
      return this.state.tables[tableIndex(direction, prefix.family)]!.lookup(prefix);
    } finally {
      this.state.release();
    }
  }

  /** The /24 index word the programs read for an IPv4 address (a number, host order) of a direction (tests). */
  indexWord(direction: RuleDirection, addr: number): number {
    this.assertOpen();
    try {
      return this.state.tables[tableIndex(direction, 4)]!.d24!.word(addr >>> 8);
    } finally {
      this.state.release();
    }
  }

  /** Where each populated prefix length lives (for tests, the bench and debugging). */
  layout(): TableLayout[] {
    return this.state.tables.map((t) => t.layout());
  }

  /** The generation in force and its sizes (tests, the bench). */
  generation(): { n: number; sizes: GenSizes } {
    return { n: this.state.gen.n, sizes: this.sizes };
  }

  // ---------------------------------------------------------------- apply

  /**
   * Writes the batch's ops once the applies called before it have written
   * theirs; a batch that needs larger maps waits for their swap (and for a
   * swap in flight first). Resolves once its ops are written: a swap it made
   * due (grow ahead, shrink) goes on in the background (settled() waits for
   * it; its failure is logged and the maps in force stay), and an apply called
   * meanwhile that fits the generation in force is written at once.
   */
  async applyBatch(batch: OpBatch, meta?: SyncMeta): Promise<void> {
    this.assertOpen();
    const prev = this.turn;
    let done!: () => void;
    this.turn = new Promise((r) => {
      done = r;
    });
    try {
      await prev;
      this.assertOpen();
      await this.applyInTurn(batch, meta);
    } finally {
      this.state.release();
      done();
    }
    this.resizer.afterApply();
  }

  /** True while a generation swap is in flight (its load on a worker thread; tests). */
  get swapping(): boolean {
    return this.resizer.busy;
  }

  /** Resolves once no generation swap is in flight, nor one an apply made due (tests, the bench, the agent's stop). */
  settled(): Promise<void> {
    return this.resizer.settled();
  }

  private async applyInTurn(b: OpBatch, meta?: SyncMeta): Promise<void> {
    validateBatch(b, meta, this.capacity.counterSlots, this.pinDir);
    checkCapacity(this.state.tables, b, this.capacity.prefixesPerTable);
    // The need is looked at and the ops written in one run of the loop: no swap lands between.
    for (;;) {
      const need = batchNeeds(this.state.tables, b, this.sizes, this.capacity.prefixesPerTable);
      const wait = this.resizer.roomFor(need);
      if (wait === null) return writeBatch(this.state, this.meta, b, need, meta);
      await wait;
      this.assertOpen();
    }
  }

  /** The resizer of this datapath's generations (gen-resizer.ts). */
  private newResizer(tries: readonly BpfMap[]): GenResizer {
    return new GenResizer({
      objDir: this.objDir,
      reserve: this.reserve,
      events: this.eventCode,
      capacity: this.capacity,
      ncpu: this.ncpu,
      maxHashLengths: this.maxHashLengths,
      tries,
      ctx: { pinDir: this.pinDir, meta: this.meta, links: this.links, log: this.log, onStep: this.onSwapStep },
      current: () => ({ state: this.state, sizes: this.sizes }),
      closed: () => this.closed,
      swapped: (next, sizes) => {
        this.state = next;
        this.sizes = sizes;
        this.ev.refresh();
      },
    });
  }

  /** The duration of the last generation swap, ms (the bench). */
  get lastSwapMs(): number {
    return this.resizer.stats.lastMs;
  }

  // ---------------------------------------------------------------- counters

  readRuleCountersInto(first: number, packets: BigUint64Array, bytes: BigUint64Array): number {
    this.assertOpen();
    return this.state.counters.readInto(first, packets, bytes, this.capacity.counterSlots, this.pinDir);
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
    this.ifCounters.close();
    this.policies.close();
    this.clock.close();
    this.state.close();
    this.state.gen.close();
    for (const m of this.shared.values()) m.close();
  }

  /** Sampled drop events: the kernel budget, the ring, the per-rule budgets (event-source.ts). */
  events(): DatapathEvents {
    this.assertOpen();
    return this.ev;
  }

  /** Program fds (tests and the bench run them with BPF_PROG_TEST_RUN). */
  programFd(which: 'xdp' | 'tc'): number {
    this.assertOpen();
    const p = this.state.gen.progs;
    return which === 'xdp' ? p.xdpFd : p.tcFd;
  }

  testRun(which: 'xdp' | 'tc', frame: Buffer, opts: TestRunOptions = {}): TestRunResult {
    return progTestRun(this.programFd(which), frame, opts, programNames(this.eventCode)[which]);
  }

  /** The map fd of a fleetwall map in force (tests and the bench; a generation's maps change with each swap). */
  mapFd(name: MapName): number {
    return GEN_MAPS.has(name) ? this.state.gen.map(name).fd : this.shared.get(name)!.fd;
  }

  private assertOpen(): void {
    if (this.closed) throw new DatapathError('use datapath', this.pinDir, E.EBADF, 'the datapath was closed');
  }
}
