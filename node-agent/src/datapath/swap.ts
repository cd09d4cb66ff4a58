// Swapping a generation in: the next generation's maps are complete and
// filled (gen-state.ts) while the programs of the current one keep deciding
// every packet; then, in an order that leaves the old or the new generation
// enforcing at every instant, whatever stops the process:
//
//   1. built     gen-<m>/ holds every map of the next generation, filled
//   2. marked    fw_meta.next_gen = m (one map update): from here a restart
//                finishes the swap; before it, it removes gen-<m>/
//   3. linked    every pinned link runs the new programs (bpf_link_update,
//                atomic per link: each packet is decided by the old
//                programs or the new ones, both on complete maps)
//   4. carried   after an RCU grace period no old program runs: the new
//                counters' base row (fw_rule_xcnt) = every old total
//                (fw_rule_cnt + fw_rule_xcnt; written whole, so a
//                restart may write it again: nothing is lost or counted twice)
//   5. committed fw_meta.gen = m, next_gen = 0; then gen-<n>/ is unpinned
//
// finishSwap() is steps 3-5 again, for a restart that finds next_gen set.

import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FW_CFG_OVERFLOW_ROW, GEN_MAPS, MAP, TABLE_CFG_HEAD, decodeTableCfg } from './abi.js';
import type { LinkAttacher } from './attach.js';
import { BpfMap } from './bpf-map.js';
import { DatapathError } from './errors.js';
import type { GenState } from './gen-state.js';
import { type Generation, genDir, removeGeneration } from './generation.js';
import { rcuGracePeriod } from './libbpf.js';
import type { PinnedMeta } from './pinned-meta.js';
import { RuleCounters } from './rule-counters.js';

const E = osConstants.errno;

/** The steps of a swap, in order (a test may stop the process at one). */
export type SwapStep = 'built' | 'marked' | 'linked' | 'carried' | 'committed';

export interface SwapContext {
  readonly pinDir: string;
  readonly meta: PinnedMeta;
  readonly links: LinkAttacher;
  readonly log: Logger | undefined;
  /** Called after each step (tests stop the process there). */
  readonly onStep?: (step: SwapStep, gen: number) => void;
}

/** The maps of a generation that are not pinned in its folder (none: it is complete). */
export function completeGeneration(pinDir: string, n: number): string[] {
  const dir = genDir(pinDir, n);
  return [...GEN_MAPS].filter((name) => !existsSync(join(dir, name)));
}

/**
 * Swaps `next` (built and filled from `cur`) in for `cur`; closes and unpins
 * `cur` once `next` is in force. A failure before step 2 leaves `cur` in
 * force and removes `next`.
 */
export function swapIn(ctx: SwapContext, cur: GenState, next: GenState): void {
  const m = next.gen.n;
  ctx.onStep?.('built', m);
  try {
    ctx.meta.update({ nextGen: m });
  } catch (e) {
    next.close();
    next.gen.close();
    removeGeneration(ctx.pinDir, m);
    throw e;
  }
  ctx.onStep?.('marked', m);
  try {
    ctx.links.switchPrograms(next.gen.progs);
  } catch (e) {
    // Back to the current generation on every link, unmarked; if even that fails, a restart finishes the swap.
    ctx.links.switchPrograms(cur.gen.progs);
    ctx.meta.update({ nextGen: 0 });
    next.close();
    next.gen.close();
    removeGeneration(ctx.pinDir, m);
    throw e;
  }
  ctx.onStep?.('linked', m);
  rcuGracePeriod();
  if (!next.gen.shares(cur.gen, MAP.RULE_CNT)) {
    const lost = cur.counters.carryInto(next.counters);
    if (lost > 0n) ctx.log?.warn({ packets: lost.toString() }, 'rule counts past the new counter slots were dropped');
  }
  ctx.onStep?.('carried', m);
  ctx.meta.update({ gen: m, nextGen: 0 });
  ctx.onStep?.('committed', m);
  const old = cur.gen.n;
  cur.close();
  cur.gen.close();
  removeGeneration(ctx.pinDir, old);
}

/**
 * A restart found fw_meta.next_gen = next.n (steps 1-2 done, 3-5 maybe
 * not): every link to `next`'s programs, the counters carried over from
 * generation `from` (its pins), committed, `from` unpinned.
 */
export function finishSwap(ctx: SwapContext, from: number, next: Generation): void {
  ctx.links.switchPrograms(next.progs);
  ctx.onStep?.('linked', next.n);
  rcuGracePeriod();
  const dir = genDir(ctx.pinDir, from);
  const oldPath = join(dir, MAP.RULE_CNT);
  if (existsSync(oldPath)) {
    // The old generation's folder is whole until the commit below (it is unpinned only after): both counter maps are there.
    const oldCnt = BpfMap.fromPin(oldPath, MAP.RULE_CNT);
    let oldX: BpfMap | null = null;
    const oldCfg = BpfMap.fromPin(join(dir, MAP.TBLCFG), MAP.TBLCFG);
    try {
      if (oldCnt.info.id !== next.map(MAP.RULE_CNT).info.id) {
        oldX = BpfMap.fromPin(join(dir, MAP.RULE_XCNT), MAP.RULE_XCNT);
        const a = counterGeometry(oldCfg);
        const b = counterGeometry(next.map(MAP.TBLCFG));
        const src = new RuleCounters(oldCnt, oldX, a);
        let dst: RuleCounters;
        try {
          dst = new RuleCounters(next.map(MAP.RULE_CNT), next.map(MAP.RULE_XCNT), b);
        } catch (e) {
          src.close();
          throw e;
        }
        try {
          src.carryInto(dst);
        } finally {
          src.close();
          dst.close();
        }
      }
    } finally {
      oldCnt.close();
      oldX?.close();
      oldCfg.close();
    }
  }
  ctx.onStep?.('carried', next.n);
  ctx.meta.update({ gen: next.n, nextGen: 0 });
  ctx.onStep?.('committed', next.n);
  removeGeneration(ctx.pinDir, from);
  ctx.log?.warn({ from, to: next.n }, 'finished a generation swap that a previous process began');
}

/** The counter rows of a generation, from its fw_tblcfg. */
function counterGeometry(tblcfg: BpfMap): { slots: number; cpuRows: number; overflowRow: boolean } {
  const v = tblcfg.lookupU32(0);
  if (!v) throw new DatapathError('read table config', tblcfg.name, E.ENOENT);
  const c = decodeTableCfg(v.subarray(0, TABLE_CFG_HEAD));
  return { slots: c.ruleSlots, cpuRows: c.cpuRows, overflowRow: (c.flags & FW_CFG_OVERFLOW_ROW) !== 0 };
}
