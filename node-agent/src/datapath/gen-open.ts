// The generation in force at open: a new install's first (at the least sizes,
// with its table configs) or the pinned one reopened (a swap a previous
// process began and marked finished first, folders of other generations
// removed, a generation missing maps refused), and the sizes of one in force
// read back from its maps. And what a reopened install keeps from its pins
// (default action, K, capacity).

import { randomInt } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import type { DefaultAction } from '../../../common/src/policy.js';
import { FW_CFG_OVERFLOW_ROW, FW_DEFAULT, type MetaValue, TABLES, type TableCfg } from './abi.js';
import type { DatapathCapacity } from './datapath.js';
import { DatapathError } from './errors.js';
import type { GenState } from './gen-state.js';
import { Generation, listGenerations, removeGeneration } from './generation.js';
import type { LinkAttacher } from './attach.js';
import { onlineCpuRows, rcuGracePeriod } from './libbpf.js';
import { mapSizes } from './open-options.js';
import { type GenSizes, firstSizes } from './sizing.js';
import { type SwapContext, completeGeneration, finishSwap } from './swap.js';
import { emptySet } from './table-config.js';

const E = osConstants.errno;

/** What a reopened install keeps from its pins: the default action (asking for another one: EINVAL), K, the capacity. */
export function pinnedSettings(
  pinned: MetaValue,
  asked: DefaultAction | undefined,
  pinDir: string,
): { defaultAction: DefaultAction; maxHashLengths: number; capacity: DatapathCapacity } {
  const defaultAction: DefaultAction = pinned.defaultAction === FW_DEFAULT.drop ? 'drop' : 'pass';
  if (asked !== undefined && asked !== defaultAction) {
    throw new DatapathError(
      'open pins',
      pinDir,
      E.EINVAL,
      `the pinned datapath was created with default action "${defaultAction}"; refusing to change it to "${asked}" (uninstall first to change it)`,
    );
  }
  return {
    defaultAction,
    maxHashLengths: pinned.maxHashLens,
    capacity: { prefixesPerTable: pinned.prefixesPerTable, counterSlots: pinned.ruleSlots },
  };
}

/** A new install's first generation, at the least sizes (folders a creation that died left are removed first). */
export function openFirstGeneration(
  objDir: string,
  pinDir: string,
  capacity: DatapathCapacity,
  reserve: Partial<DatapathCapacity>,
  ncpu: number,
  ringBytes: number,
  events: boolean,
): Generation {
  for (const n of listGenerations(pinDir)) removeGeneration(pinDir, n);
  const rows = onlineCpuRows();
  const sizes = firstSizes(
    { ...capacity, reservePrefixes: reserve.prefixesPerTable, reserveSlots: reserve.counterSlots },
    rows,
    ncpu > rows,
  );
  return Generation.open({ objDir, pinDir, n: 1, sizes, mapSizes: mapSizes(sizes, capacity, ncpu, ringBytes), events });
}

/** The table configs of a new install's first generation. */
export function firstConfigs(gen: Generation, defaultAction: DefaultAction): TableCfg[] {
  return TABLES.map((d) => ({
    active: 0,
    defaultAction: FW_DEFAULT[defaultAction],
    nbuckets: gen.map(d.tab).maxEntries,
    seed: randomInt(0, 2 ** 32),
    ruleSlots: gen.sizes.slots,
    cpuRows: gen.sizes.cpuRows,
    flags: gen.sizes.overflowRow ? FW_CFG_OVERFLOW_ROW : 0,
    sets: [emptySet(), emptySet()],
  }));
}

/**
 * The generation in force, loaded: a swap a previous process began and
 * marked is finished first; folders of other generations (a swap that
 * never got marked) are removed. `events`: which pair of programs (objects.ts).
 */
export function reopenGeneration(ctx: SwapContext, objDir: string, events: boolean): Generation {
  const { pinDir } = ctx;
  const m = ctx.meta.value;
  let n = m.gen;
  let gen: Generation | null = null;
  if (m.nextGen !== 0) {
    const missing = completeGeneration(pinDir, m.nextGen);
    if (missing.length > 0) throw damaged(pinDir, m.nextGen, missing);
    gen = Generation.open({ objDir, pinDir, n: m.nextGen, sizes: placeholderSizes(), mapSizes: new Map(), events });
    finishSwap(ctx, m.gen, gen);
    n = m.nextGen;
  }
  for (const g of listGenerations(pinDir)) if (g !== n) removeGeneration(pinDir, g);
  if (!gen) {
    const missing = completeGeneration(pinDir, n);
    if (missing.length > 0) throw damaged(pinDir, n, missing);
    gen = Generation.open({ objDir, pinDir, n, sizes: placeholderSizes(), mapSizes: new Map(), events });
  }
  return gen;
}

/**
 * Every pinned link onto the programs this open loaded (a restart with the
 * events setting changed puts the other pair on the links here, not at the
 * next attach()); then, if any link changed, an RCU grace period: no program
 * of the previous process runs after it. Events turned on after this see no
 * drop that a program without the event code counted after their marks were
 * set (event-source.ts).
 */
export function takeOverLinks(links: LinkAttacher, gen: Generation): void {
  if (links.switchPrograms(gen.progs) > 0) rcuGracePeriod();
}

/** The sizes of a generation in force, read back from its maps. */
export function sizesOf(s: GenState): GenSizes {
  const g = s.counters.geometry;
  return {
    prefixes: s.tables.map((t) => t.size),
    blocks: s.tables.map((t) => t.d24?.capacity ?? 0),
    slots: g.slots,
    cpuRows: g.cpuRows,
    overflowRow: g.overflowRow,
  };
}

/** Sizes for loading a generation whose maps are all pinned (they keep their sizes). */
function placeholderSizes(): GenSizes {
  return { prefixes: TABLES.map(() => 0), blocks: TABLES.map(() => 0), slots: 0, cpuRows: 0, overflowRow: false };
}

function damaged(pinDir: string, n: number, missing: string[]): DatapathError {
  return new DatapathError(
    'open pins',
    pinDir,
    E.EIO,
    `generation ${n} lacks ${missing.join(', ')}; the pinned state is damaged: uninstall ("fleetwall agent uninstall") and start again`,
  );
}
