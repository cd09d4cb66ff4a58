// bench:dataplane, per packet:
//

// 1. ns_per_packet.*: BPF_PROG_TEST_RUN of the XDP ingress program without
//    event code (fw_xdp_noev: what a node with events off runs; --compare OBJ
//    takes OBJ's fw_xdp_noev, or fw_xdp_ingress in a build before it), compiled
//    with a bench-only prologue that rewrites the source address on every
//    run from a cycle of 1024 distinct addresses (bpf/bench/vary.h), so the
//    figure is over varied sources, not one hot packet (2 x rounds + 1 rounds of
//    300k runs, alternating order). The baseline is the
//    bare count-and-pass program with the same prologue; baseline_hot is the
//    bare program alone. Sets are mixed /32 + /24 (IPv6: /128 + /48). Each
//    case runs with the production layout (hash with K=6 lengths + trie)
//    and, for comparison, in a plain LPM trie (suffix _trie: the bench's
//    trie_drop program, one BPF_MAP_TYPE_LPM_TRIE lookup; no fleetwall
//    layout is a plain trie, its programs read the IPv4 /24 index first). Rule
//    counters: 1024 slots (slot = i % 1024). Two more v4_1m figures show the
//    costs the headline leaves out: one counter slot per rule (1M slots,
//    suffix _rule_slots) and 16384 sources (suffix _16k_sources, against a
//    baseline with 16384 sources: caches and TLB cold). v4_1m_miss_near: misses
//    next to listed addresses (same /16, unlisted /24 or beside a listed /32:
//    the /24 index word says LONGER there, so the longer lengths are probed;
//    v4_1m_miss: misses in 100.64.0.0/10, whose /24 words are empty). IPv4 _hit_long /
//    _hit_short: each half of the hit sources alone (in /32 entries: the hash probed; in /24
//    entries: the /24 word answers). Hit and miss cases check the verdict of every round's
//    last run. v4_1m_hit_random_order
//    draws the same 1024 sources 65536 times in a random order: in the
//    repeating cycle a branch predictor learns each packet's path, in real
//    traffic it cannot (against baseline_random_order).
//
// 2. With --variants (dataplane/variants.ts), each IPv4 case again with the
//    variants and with this build's object loaded a second time (`_aa`, the
//    A/A control), interleaved in the same rounds; noise.<case>: the A/A
//    per-round ratios' spread beside each variant's (report.ts noiseReport).
//    --pps-cases REGEX keeps only the matching cases.

import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { removePins } from '../../node-agent/src/datapath/bpf-datapath.js';
import { loadObject } from '../../node-agent/src/datapath/bpf-object.js';
import { XDP_DROP, XDP_PASS } from '../../node-agent/src/datapath/libbpf.js';
import { progTestRun } from '../../node-agent/src/datapath/test-run.js';
import { checkpoint } from '../lib/interrupt.js';
import { hitSources, missSources, nearMissSources, randomOrder } from '../lib/prefix-sets.js';
import { fillTrie } from './anchors.js';
import { COMPARE, COMPARE_PINNED, PPS_CASES, ROUNDS, root, VARIANT_KINDS, VARIANTS } from './options.js';
import { emit, median, noiseReport } from './report.js';
import { datapaths, newPinDir, noevProgramOf, objects, openSet, pinDirs, pinnedVariant, RANDOM_DRAWS, variant } from './sets.js';
import { counterVariant, flatVariant, flood } from './variants.js';
import type { BpfDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';

function frame(family: 4 | 6): Buffer {
  const f = Buffer.alloc(family === 4 ? 64 : 80);
  f.writeUInt16BE(family === 4 ? 0x0800 : 0x86dd, 12);
  if (family === 4) {
    f[14] = 0x45;
    f.writeUInt16BE(50, 16);
    f[22] = 64;
    f[23] = 17;
    f.set([192, 0, 2, 254], 30);
  } else {
    f[14] = 0x60;
    f.writeUInt16BE(26, 18);
    f[20] = 17;
    f[21] = 64;
    f.set([0x20, 0x01, 0x0d, 0xb8, 0xff], 38);
  }
  return f;
}

/** The mean of the middle half (the kernel reports whole ns: a mean of many rounds resolves less than 1 ns). */
function trimmedMean(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  const k = Math.floor(s.length / 4);
  const mid = s.slice(k, s.length - k);
  return Math.round((mid.reduce((p, q) => p + q, 0) / mid.length) * 1000) / 1000;
}

/** --pps-cases: the baselines always run (every ratio needs them), the other cases if they match. */
function want(metric: string): boolean {
  return metric.startsWith('ns_per_packet.baseline') || PPS_CASES.test(metric);
}

export async function perPacket(): Promise<void> {
  const NSRC = 1024;
  // Short runs, many rounds: every case sees the same moments of a noisy host.
  const REPEAT = 300_000;
  const PPS_ROUNDS = 2 * ROUNDS + 1;
  const v4 = frame(4);
  const v6 = frame(6);
  const runs: Array<{
    metric: string;
    fd: number;
    frame: Buffer;
    ctx: Record<string, unknown>;
    pinDir?: string;
    sources?: Uint8Array[];
    expect?: 'drop' | 'pass';
    dp?: BpfDatapath;
    /** The case this one is a variant of (x_a: the median per-round ratio to it). */
    of?: string;
  }> = [];
  runs.push({
    metric: 'ns_per_packet.baseline',
    fd: variant('bare_vary.bpf.o', 'bare_pass', hitSources(4, 1000, NSRC)),
    frame: v4,
    ctx: { program: 'bare count-and-pass + source rotation' },
  });
  // The same sources drawn in a random order that never repeats: in a repeating cycle of 1024 a branch
  // predictor learns which path each packet takes; in real traffic it cannot.
  runs.push({
    metric: 'ns_per_packet.baseline_random_order',
    fd: variant('bare_vary.bpf.o', 'bare_pass', randomOrder(hitSources(4, 1000, NSRC), RANDOM_DRAWS)),
    frame: v4,
    ctx: { program: 'bare count-and-pass + source rotation', sources: `${NSRC}, in a random order of ${RANDOM_DRAWS}` },
  });
  const bare = loadObject(join(root, 'bpf/bench/obj/bare.bpf.o'));
  objects.push(bare);
  runs.push({
    metric: 'ns_per_packet.baseline_hot',
    fd: bare.progFd('bare_pass'),
    frame: v4,
    ctx: { program: 'bare count-and-pass, one hot packet' },
  });

  const sets: Array<{ name: string; family: 4 | 6; n: number; miss: boolean }> = [
    { name: 'v4_1k', family: 4, n: 1000, miss: false },
    { name: 'v4_100k', family: 4, n: 100_000, miss: false },
    { name: 'v4_1m', family: 4, n: 1_000_000, miss: true },
    { name: 'v6_100k', family: 6, n: 100_000, miss: false },
  ];
  for (const s of sets) {
    const names = ['_hit', '_hit_long', '_hit_short', '_hit_random_order', '_miss', '_miss_near'].flatMap((c) => [c, `${c}_trie`]);
    if (!names.some((c) => want(`ns_per_packet.${s.name}${c}`))) continue;
    await checkpoint();
    const hit = hitSources(s.family, s.n, NSRC);
    const frameOf = s.family === 4 ? v4 : v6;
    // fleetwall (K=6), then the plain LPM trie of the bench (suffix _trie) on the same prefixes.
    const { dp, pinDir, seconds } = await openSet(s.name, s.family, s.n, 6);
    process.stderr.write(`# loaded ${s.name} (${s.n}) in ${seconds.toFixed(2)} s\n`);
    const triePin = newPinDir(`${s.name}_trie`);
    mkdirSync(triePin, { recursive: true });
    const layouts = [
      {
        suffix: '',
        ctx: { prefixes: s.n, layout: 'hash (K=6) + trie', sources: NSRC },
        fd: (src: Uint8Array[]) => variant('xdp_ingress_vary.bpf.o', 'fw_xdp_noev', src, pinDir),
        pinDir,
        dp,
      },
      {
        suffix: '_trie',
        ctx: { prefixes: s.n, layout: 'plain lpm trie (bench program trie_drop)', sources: NSRC },
        fd: (src: Uint8Array[]) => variant('bare_vary.bpf.o', 'trie_drop', src, triePin, 'trie'),
        pinDir: undefined,
        dp: undefined,
      },
    ];
    for (const l of layouts) {
      const mine = names.filter((c) => (l.suffix ? c.endsWith('_trie') : !c.endsWith('_trie')));
      if (!mine.some((c) => want(`ns_per_packet.${s.name}${c}`))) continue;
      const ctx = l.ctx;
      if (want(`ns_per_packet.${s.name}_hit${l.suffix}`))
        runs.push({
          metric: `ns_per_packet.${s.name}_hit${l.suffix}`,
          fd: l.fd(hit),
          frame: frameOf,
          ctx,
          pinDir: l.pinDir,
          dp: l.dp,
          sources: hit,
          expect: 'drop',
        });
      // IPv4: each half of the hit sources alone: _hit_long those in /32 entries (the /24 word says LONGER,
      // the hash is probed), _hit_short those in /24 entries (the /24 word is the answer).
      for (const [kind, parity, what] of [
        ['long', 0, 'in /32 entries (the hash probed)'],
        ['short', 1, 'in /24 entries (the /24 word answers)'],
      ] as const) {
        const metric = `ns_per_packet.${s.name}_hit_${kind}`;
        if (s.family !== 4 || l.suffix !== '' || !want(metric)) continue;
        const src = hit.filter((_, k) => k % 2 === parity);
        runs.push({
          metric,
          fd: l.fd(src),
          frame: v4,
          ctx: { ...ctx, sources: `${src.length}, ${what}` },
          pinDir: l.pinDir,
          dp: l.dp,
          sources: src,
          expect: 'drop',
        });
      }
      if (l.suffix === '_trie') fillTrie(triePin, s.family, s.n);
      if (s.name === 'v4_1m' && l.suffix === '' && want('ns_per_packet.v4_1m_hit_random_order')) {
        const rnd = randomOrder(hit, RANDOM_DRAWS);
        runs.push({
          metric: 'ns_per_packet.v4_1m_hit_random_order',
          fd: l.fd(rnd),
          frame: v4,
          ctx: { ...ctx, sources: `${NSRC}, in a random order of ${RANDOM_DRAWS}`, baseline: 'baseline_random_order' },
          pinDir: l.pinDir,
          dp: l.dp,
          sources: rnd,
        });
      }
      if (s.miss) {
        const miss = missSources(NSRC);
        if (want(`ns_per_packet.${s.name}_miss${l.suffix}`))
          runs.push({
            metric: `ns_per_packet.${s.name}_miss${l.suffix}`,
            fd: l.fd(miss),
            frame: v4,
            ctx,
            pinDir: l.pinDir,
            dp: l.dp,
            sources: miss,
            expect: 'pass',
          });
        const near = nearMissSources(s.n, NSRC);
        if (want(`ns_per_packet.${s.name}_miss_near${l.suffix}`))
          runs.push({
            metric: `ns_per_packet.${s.name}_miss_near${l.suffix}`,
            fd: l.fd(near),
            frame: v4,
            ctx: { ...ctx, sources: `${NSRC}, next to listed ones (same /16, unlisted)` },
            pinDir: l.pinDir,
            dp: l.dp,
            sources: near,
            expect: 'pass',
          });
      }
    }
  }
  // What the headline leaves out, on the v4 1M set: one counter slot per rule; 16384 sources.
  if (['v4_1m_hit_rule_slots', 'v4_1m_hit_16k_sources'].some((c) => want(`ns_per_packet.${c}`))) {
    await checkpoint();
    const { pinDir, seconds } = await openSet('v4_1m_rule_slots', 4, 1_000_000, 6, true);
    process.stderr.write(`# loaded v4_1m with one counter slot per rule in ${seconds.toFixed(2)} s\n`);
    runs.push({
      metric: 'ns_per_packet.v4_1m_hit_rule_slots',
      fd: variant('xdp_ingress_vary.bpf.o', 'fw_xdp_noev', hitSources(4, 1_000_000, NSRC), pinDir),
      frame: v4,
      ctx: { prefixes: 1_000_000, layout: 'hash (K=6) + trie', sources: NSRC, counter_slots: 1_000_000 },
    });
    const big = 16384;
    runs.push({
      metric: 'ns_per_packet.baseline_16k_sources',
      fd: variant('bare_vary.bpf.o', 'bare_pass', hitSources(4, 1000, big)),
      frame: v4,
      ctx: { program: 'bare count-and-pass + source rotation', sources: big },
    });
    runs.push({
      metric: 'ns_per_packet.v4_1m_hit_16k_sources',
      fd: variant('xdp_ingress_vary.bpf.o', 'fw_xdp_noev', hitSources(4, 1_000_000, big), pinDir),
      frame: v4,
      ctx: { prefixes: 1_000_000, layout: 'hash (K=6) + trie', sources: big, counter_slots: 1_000_000, baseline: 'baseline_16k_sources' },
    });
  }
  // --variants: the IPv4 cases with ABI 5's lookup (and each half of it) and the counter variants, beside
  // this build's; and the A/A control, `_aa`: this build's object loaded a second time, interleaved alike,
  // whose per-round ratios to the first are the noise the variants' ratios are read against (noise.*).
  if (VARIANTS) {
    const kinds: Array<[string, string, (run: (typeof runs)[number]) => number]> = [
      [
        'aa',
        "this build's object, a second load (A/A control)",
        (r) => variant('xdp_ingress_vary.bpf.o', 'fw_xdp_noev', r.sources!, r.pinDir),
      ],
      ['flat', "ABI 5's lookup: configs by map lookup, one-level /24 index (64 MB)", (r) => flatVariant(r.dp!, r.pinDir!, r.sources!)],
      ['cfg_map', 'configs by map lookup, two-level /24 index', (r) => flatVariant(r.dp!, r.pinDir!, r.sources!, 'cfg_map')],
      ['one_level', 'one-level /24 index (64 MB), configs in .bss', (r) => flatVariant(r.dp!, r.pinDir!, r.sources!, 'one_level')],
      [
        'direct',
        "this build's index, the block pool as one map value read by address (no lookup)",
        (r) => flatVariant(r.dp!, r.pinDir!, r.sources!, 'direct'),
      ],
      [
        'global',
        "this build's index, the block pool a global of the program (.bss.fw_pool), read by address (no lookup)",
        (r) => flatVariant(r.dp!, r.pinDir!, r.sources!, 'global'),
      ],
      [
        'hashed',
        'blocks placed by a hash of the /16, owner tags read with the word; the /16 word on a collision',
        (r) => flatVariant(r.dp!, r.pinDir!, r.sources!, 'hashed'),
      ],
      ['expect', "this build's index, the block path marked likely", (r) => flatVariant(r.dp!, r.pinDir!, r.sources!, 'expect')],
      [
        'collapse',
        'configs by map lookup, uniform blocks folded into their /16 words (read against cfg_map)',
        (r) => flatVariant(r.dp!, r.pinDir!, r.sources!, 'collapse'),
      ],
      ['cnt_shared', 'shared counters, atomic adds', (r) => counterVariant('shared', r.pinDir!, r.sources!)],
      ['cnt_hybrid', 'hybrid counters, none hot', (r) => counterVariant('hybrid', r.pinDir!, r.sources!)],
    ];
    for (const run of [...runs]) {
      if (!run.pinDir || !run.sources || !run.dp || run.frame !== v4) continue;
      for (const [kind, what, load] of kinds) {
        if (kind !== 'aa' && !VARIANT_KINDS.has(kind)) continue;
        runs.push({ ...run, of: run.metric, metric: `${run.metric}_${kind}`, fd: load(run), ctx: { ...run.ctx, variant: what } });
      }
    }
  }
  // --compare OBJ[,OBJ...]: every fleetwall case again with other builds of
  // the vary object (suffixes _b, _c, ..., x_a their ratio to this build's),
  // interleaved with the first: an A/B of a program change; with it (and with
  // --compare-pinned) the A/A control `_aa` runs too, the noise the other
  // ratios are read against (noise.<case>).
  const AB = COMPARE.length > 0 || COMPARE_PINNED.length > 0;
  for (const run of [...runs]) {
    if (!run.pinDir || !run.sources || run.of) continue;
    COMPARE.forEach((obj, i) => {
      runs.push({
        ...run,
        of: run.metric,
        metric: `${run.metric}_${String.fromCharCode(98 + i)}`,
        fd: variant(obj, noevProgramOf(obj), run.sources!, run.pinDir),
        ctx: { ...run.ctx, object: obj, program: noevProgramOf(obj) },
      });
    });
    // --compare-pinned OBJ@DIR,...: OBJ on the maps under DIR/<set>, pinned by its own tree's agent
    // (issue-time-pins.ts: the same prefixes and counter slots as this run's set), the same sources.
    const set = /^ns_per_packet\.(v4_1k|v4_1m)_(hit|hit_long|hit_short|miss|miss_near)$/.exec(run.metric)?.[1];
    COMPARE_PINNED.forEach(({ obj, dir }, i) => {
      if (!set || !existsSync(join(dir, set))) return;
      const program = noevProgramOf(obj);
      runs.push({
        ...run,
        of: run.metric,
        metric: `${run.metric}_pinned${i === 0 ? '' : i + 1}`,
        fd: pinnedVariant(obj, program, run.sources!, join(dir, set)),
        ctx: { ...run.ctx, object: obj, program, maps: join(dir, set) },
      });
    });
    // An A/B's A/A control, `_aa` (--variants adds its own).
    if (AB && !VARIANTS && run.frame === v4)
      runs.push({
        ...run,
        of: run.metric,
        metric: `${run.metric}_aa`,
        fd: variant('xdp_ingress_vary.bpf.o', 'fw_xdp_noev', run.sources, run.pinDir),
        ctx: { ...run.ctx, variant: "this build's object, a second load (A/A control)" },
      });
  }
  const results = new Map<string, number[]>();
  for (let r = 0; r < PPS_ROUNDS; r++) {
    await checkpoint();
    for (const run of r % 2 === 0 ? runs : [...runs].reverse()) {
      const res = progTestRun(run.fd, run.frame, { repeat: REPEAT });
      // Every source of a hit set is denied, of a miss set unlisted: the last run's verdict shows which.
      if (run.expect && res.retval !== (run.expect === 'drop' ? XDP_DROP : XDP_PASS)) {
        throw new Error(
          `${run.metric}: verdict ${res.retval}, expected ${run.expect}: the sources do not ${run.expect === 'drop' ? 'hit' : 'miss'} the set`,
        );
      }
      results.set(run.metric, [...(results.get(run.metric) ?? []), res.durationNs]);
    }
  }
  for (const run of runs) {
    const xs = results.get(run.metric)!;
    const baseName = `ns_per_packet.${(run.ctx.baseline as string | undefined) ?? 'baseline'}`;
    const bs = results.get(baseName)!;
    const m = median(xs);
    const a = run.of ? results.get(run.of)! : undefined;
    emit(run.metric, m, {
      ...run.ctx,
      ...(a
        ? { x_a: Math.round(median(xs.map((x, i) => x / a[i]!)) * 1000) / 1000, x_a_mean: trimmedMean(xs.map((x, i) => x / a[i]!)) }
        : {}),
      // The ratio of the medians, and the median of the per-round ratios (the rounds interleave every case).
      x_baseline: Math.round((m / median(bs)) * 100) / 100,
      x_baseline_rounds: Math.round(median(xs.map((x, i) => x / bs[i]!)) * 100) / 100,
      rounds: xs.length,
      min: Math.min(...xs),
      max: Math.max(...xs),
      // An A/B's ratios are read per round: every round's figure, in the order run.
      ...(VARIANTS || AB ? { per_round: xs } : {}),
    });
  }
  // noise.<case>: the A/A control's spread beside each variant's ratios to this build.
  for (const run of runs) {
    if (run.of || !results.has(`${run.metric}_aa`)) continue;
    const others = runs.filter((v) => v.of === run.metric && !v.metric.endsWith('_aa'));
    noiseReport(
      run.metric.replace(/^ns_per_packet\./, 'noise.'),
      results.get(run.metric)!,
      results.get(`${run.metric}_aa`)!,
      others.map((v) => [v.metric.slice(run.metric.length + 1), results.get(v.metric)!]),
    );
  }
  if (VARIANTS && (VARIANT_KINDS.has('cnt_shared') || VARIANT_KINDS.has('cnt_hybrid'))) await flood();
  // Release the big sets before the next phase.
  for (const o of objects.splice(0)) o.close();
  for (const dp of datapaths.splice(0)) dp.close();
  for (const d of pinDirs.splice(0)) removePins(d);
}
