// Swapping in a generation of other sizes without blocking the event loop.
// A swap (one at a time) runs in two parts:
//
//   1. load   (asynchronous) the next generation's folder with the maps it
//             keeps from the current one, then its maps created and its
//             programs loaded on a worker thread (Generation.load: the
//             verifier takes 0.3-6 s under load); nothing else touches the
//             objects being loaded. Meanwhile the current generation stays
//             in force and applies that fit in it go on writing it.
//   2. swap   (synchronous, one run of the event loop) the next generation
//             filled from the current one - including what was applied
//             during the load - and swapped in (gen-state.ts, swap.ts).
//
// A load or a fill that fails leaves the current generation in force and
// removes the next one's folder; so does a datapath closed during the load.
// Failed swaps are counted by kind, the last one's reason kept until a swap
// goes in (stats: the datapath's memory(), the agent's /metrics and /healthz).

import { constants as osConstants } from 'node:os';
import { MAP, type MapName, TABLES } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import type { DatapathCapacity } from './datapath.js';
import { DatapathError } from './errors.js';
import { GenState } from './gen-state.js';
import { Generation, listGenerations, removeGeneration } from './generation.js';
import { mapSizes } from './open-options.js';
import { pinPrograms } from './pins.js';
import { type GenLimits, type GenSizes, type GenUsage, grow } from './sizing.js';
import { type SwapContext, swapIn } from './swap.js';

const E = osConstants.errno;

/** What a swapper needs of its datapath. */
export interface SwapHost {
  readonly objDir: string;
  /** Which pair of programs every generation loads (with the event code or without: the datapath's events setting). */
  readonly events: boolean;
  readonly capacity: DatapathCapacity;
  readonly ncpu: number;
  /** K of the install. */
  readonly maxHashLengths: number;
  /** The tries every generation shares, by table. */
  readonly tries: readonly BpfMap[];
  readonly ctx: SwapContext;
  /** The generation in force and its sizes. */
  current(): { readonly state: GenState; readonly sizes: GenSizes };
  /** What the maps in force hold now (a shrink's sizes are checked against it after the load). */
  usage(): GenUsage;
  limits(): GenLimits;
  /** True once the datapath was closed. */
  closed(): boolean;
  /** `next` is in force at `sizes` (the old state is closed). */
  swapped(next: GenState, sizes: GenSizes): void;
}

export type SwapWhy = 'grow' | 'shrink';

/** Swaps done and their durations; swaps that failed (the generation in force stayed). */
export interface SwapStats {
  /** Swaps done, and their durations (ms, from the start of the load to the commit). */
  count: number;
  maxMs: number;
  lastMs: number;
  /** Swaps that failed, by kind (not those a close during the load ended). */
  readonly failed: Record<SwapWhy, number>;
  /** The last failure's kind and reason ("grow: ..."), '' once a swap went in after it. */
  lastFailure: string;
  /** When it failed (epoch ms), 0 with lastFailure ''. */
  lastFailureAt: number;
}

export class GenSwapper {
  private inFlight: Promise<void> | null = null;
  readonly stats: SwapStats = { count: 0, maxMs: 0, lastMs: 0, failed: { grow: 0, shrink: 0 }, lastFailure: '', lastFailureAt: 0 };

  constructor(private readonly host: SwapHost) {}

  /** True while a swap is in flight (its load running). */
  get busy(): boolean {
    return this.inFlight !== null;
  }

  /** Resolves once no swap is in flight (whatever its outcome: its starter gets its error). */
  async settled(): Promise<void> {
    while (this.inFlight !== null) await this.inFlight.catch(() => undefined);
  }

  /** Swaps in a generation at `sizes`; one at a time (call it only when not busy). */
  swap(sizes: GenSizes, why: SwapWhy): Promise<void> {
    if (this.inFlight !== null) throw new DatapathError('swap in generation', this.host.ctx.pinDir, E.EBUSY, 'a swap is in flight');
    const p = this.run(sizes, why)
      .catch((e: unknown) => {
        if (!this.host.closed()) {
          this.stats.failed[why]++;
          this.stats.lastFailure = `${why}: ${e instanceof Error ? e.message : String(e)}`;
          this.stats.lastFailureAt = Date.now();
        }
        throw e;
      })
      .finally(() => {
        this.inFlight = null;
      });
    this.inFlight = p;
    return p;
  }

  private async run(sizes: GenSizes, why: SwapWhy): Promise<void> {
    const h = this.host;
    const { pinDir } = h.ctx;
    const t0 = performance.now();
    const { state: cur, sizes: old } = h.current();
    const n = Math.max(cur.gen.n, ...listGenerations(pinDir)) + 1;
    let gen: Generation;
    try {
      gen = await Generation.load({
        objDir: h.objDir,
        pinDir,
        n,
        sizes,
        mapSizes: mapSizes(sizes, h.capacity, h.ncpu),
        keep: kept(cur, old, sizes),
        events: h.events,
      });
    } catch (e) {
      removeGeneration(pinDir, n);
      throw e;
    }
    let next: GenState;
    try {
      if (h.closed()) throw new DatapathError('swap in generation', pinDir, E.EBADF, 'the datapath was closed during the load');
      // Swaps are one at a time: `cur` is still in force. What was applied to it during the load must fit the new sizes.
      if (why === 'shrink' && grow(sizes, h.usage(), h.limits()) !== sizes) {
        throw new DatapathError('swap in generation', pinDir, E.ENOSPC, 'the maps filled up during the load');
      }
      next = GenState.next(gen, cur, h.tries, h.maxHashLengths);
    } catch (e) {
      gen.close();
      removeGeneration(pinDir, n);
      throw e;
    }
    swapIn(h.ctx, cur, next);
    h.swapped(next, sizes);
    pinPrograms(pinDir, gen.progs);
    const ms = performance.now() - t0;
    this.stats.count++;
    this.stats.lastFailure = '';
    this.stats.lastFailureAt = 0;
    this.stats.lastMs = ms;
    this.stats.maxMs = Math.max(this.stats.maxMs, ms);
    h.ctx.log?.info(
      { gen: n, why, ms: Math.round(ms), prefixes: sizes.prefixes, blocks: sizes.blocks, slots: sizes.slots },
      'maps resized',
    );
  }
}

/** The maps of `cur` the next generation keeps: those whose size does not change. */
function kept(cur: GenState, old: GenSizes, sizes: GenSizes): Map<MapName, BpfMap> {
  const keep = new Map<MapName, BpfMap>();
  for (const d of TABLES) {
    if (sizes.prefixes[d.id] === old.prefixes[d.id]) {
      keep.set(d.tab, cur.gen.map(d.tab));
      keep.set(d.spill, cur.gen.map(d.spill));
    }
    if (d.d24 && sizes.blocks[d.id] === old.blocks[d.id]) keep.set(d.d24, cur.gen.map(d.d24));
  }
  if (sizes.slots === old.slots) keep.set(MAP.JOURNAL, cur.gen.map(MAP.JOURNAL));
  if (sizes.slots === old.slots && sizes.cpuRows === old.cpuRows && sizes.overflowRow === old.overflowRow) {
    // The two counter maps together: the base row (fw_rule_xcnt) belongs to these CPU rows.
    keep.set(MAP.RULE_CNT, cur.gen.map(MAP.RULE_CNT));
    keep.set(MAP.RULE_XCNT, cur.gen.map(MAP.RULE_XCNT));
  }
  return keep;
}
