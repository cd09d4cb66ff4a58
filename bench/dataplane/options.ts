// bench:dataplane's flags (listed in bench/dataplane.ts and bench/README.md),
// read once from the command line, and the constants the phases share.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

/** The live generator's traffic: a source rewritten into every frame, one source per page, one hot source. */
export type Traffic = 'stamped' | 'rewrite' | 'one';

export const root = resolve(import.meta.dirname, '../..');
const argv = process.argv.slice(2);
export const ROUNDS = Number(argv[argv.indexOf('--rounds') + 1] ?? 0) || 7;
export const DO_PPS = !argv.includes('--no-pps');
export const DO_MPPS = !argv.includes('--no-mpps');
export const TX_SHIFT = Number(argv[argv.indexOf('--tx-shift') + 1] ?? 0) || 0;
export const GEN_BATCH = Number(argv[argv.indexOf('--gen-batch') + 1] ?? 0) || 64;
export const TRAFFIC = (
  argv.includes('--traffic') ? argv[argv.indexOf('--traffic') + 1]!.split(',') : ['rewrite', 'stamped', 'one']
) as Traffic[];
for (const t of TRAFFIC)
  if (!['rewrite', 'stamped', 'one'].includes(t))
    throw new Error(`--traffic: unknown mode "${t}" (use rewrite, stamped, one, comma-separated)`);
export const PROG_STATS = argv.includes('--prog-stats');
/** --variants: the designs the lookup and counters were chosen against, beside them (dataplane/variants.ts). */
export const VARIANTS = argv.includes('--variants');
/** The variants --variants adds (all by default); the A/A control, `_aa`, always runs with them. */
export const VARIANT_KINDS = new Set(
  argv.includes('--variant-kinds')
    ? argv[argv.indexOf('--variant-kinds') + 1]!.split(',')
    : ['flat', 'cfg_map', 'one_level', 'cnt_shared', 'cnt_hybrid'],
);
for (const k of VARIANT_KINDS)
  if (!['flat', 'cfg_map', 'one_level', 'direct', 'global', 'expect', 'collapse', 'hashed', 'cnt_shared', 'cnt_hybrid'].includes(k))
    throw new Error(
      `--variant-kinds: unknown variant "${k}" (flat, cfg_map, one_level, direct, global, expect, collapse, hashed, cnt_shared, cnt_hybrid)`,
    );
/** --pps-cases REGEX: only the per-packet cases whose metric matches (the baselines always run). */
export const PPS_CASES = new RegExp(argv.includes('--pps-cases') ? argv[argv.indexOf('--pps-cases') + 1]! : '.');
/** --compare OBJ[,OBJ...]: other builds of the vary object on this build's maps (suffixes _b, _c, ...). */
export const COMPARE = argv.includes('--compare') ? argv[argv.indexOf('--compare') + 1]!.split(',').map((f) => resolve(f)) : [];
/**
 * --compare-pinned OBJ@DIR[,OBJ@DIR...]: foreign vary objects (the issue-time program; a build of another
 * ABI) on the maps their own agents pinned under DIR/<set> (bench/dataplane/issue-time-pins.ts), suffixes
 * _pinned, _pinned2, ... in the order given.
 */
export const COMPARE_PINNED = (() => {
  if (!argv.includes('--compare-pinned')) return [];
  return (argv[argv.indexOf('--compare-pinned') + 1] ?? '').split(',').map((a) => {
    const at = a.lastIndexOf('@');
    if (at <= 0) throw new Error('--compare-pinned OBJ@DIR[,OBJ@DIR...] (DIR: the pins of bench/dataplane/issue-time-pins.ts)');
    return { obj: resolve(a.slice(0, at)), dir: resolve(a.slice(at + 1)) };
  });
})();
export const COMPARE_LIVE = argv.includes('--compare-live')
  ? argv[argv.indexOf('--compare-live') + 1]!.split(',').map((f) => resolve(f))
  : [];
// The paced search (--no-paced skips it): the generator's rate is set, not as fast as it can.
export const DO_PACED = !argv.includes('--no-paced');
// --cases REGEX: only the drop-rate sinks whose metric matches (the ratios' bases always run).
export const CASES = new RegExp(argv.includes('--cases') ? argv[argv.indexOf('--cases') + 1]! : '.');
/** The published x bare figures, by the sink here that is built the same way. */
export const ANCHORS: Record<string, number> = {
  'mpps.xdp_filter_10k_drop': 0.66, // xdp-filter, 10k exact addresses
  'mpps.xdp_hash32_100k_drop': 0.73, // XDP /32 hash of 100k
  'mpps.xdp_trie_100k_drop': 0.5, // XDP LPM trie of 100k
  'mpps.nft_100k_drop': 0.1, // nftables interval set
};
export const ALWAYS = new Set(['mpps.xdp_bare_drop', 'mpps.xdp_parse_drop', 'mpps.xdp_hash32_100k_drop', 'mpps.nft_100k_drop']);
export const IDLE_POLL = !argv.includes('--no-idle-poll') && existsSync('/dev/cpu_dma_latency');
export const PACED_TRIALS = Number(argv[argv.indexOf('--paced-trials') + 1] ?? 0) || 10;
export const PACED_MAX = 14; // Mpps: above what one generator reaches here
export const PACED_TRIAL_MS = 250;
export const PACED_SETTLE_MS = 60;
