// npm run bench:dataplane [-- --rounds N] [--no-mpps] [--no-pps] [--traffic rewrite,stamped,one]
//                          [--prog-stats] [--compare OBJ] [--gen-batch N] [--tx-shift k]
//                          [--no-paced] [--paced-trials N] [--cases REGEX] [--no-idle-poll]
//                          [--compare-live OBJ[,OBJ...]]
//
// Prints one JSON object per line: {"metric": ..., "value": ..., ...context}.
//
// 1. ns_per_packet.*: BPF_PROG_TEST_RUN of the XDP ingress program, compiled
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
//    v4_1m_miss: misses in 100.64.0.0/10, whose /24 words are empty). Hit and miss cases check the verdict of every round's
//    last run. v4_1m_hit_random_order
//    draws the same 1024 sources 65536 times in a random order: in the
//    repeating cycle a branch predictor learns each packet's path, in real
//    traffic it cannot (against baseline_random_order).
// 2. seconds.load_1m_prefixes: Datapath.apply() of 1,000,000 entry.upsert ops
//    into a fresh table (one call), median of 3.
// 3. mpps.*: drop rate into a veth peer. One live-frames generator (one long
//    BPF_PROG_TEST_RUN, XDP_TX) on CPU0 in namespace a sends 64-byte IPv4/UDP
//    frames from 4096 sources inside the set of the case; the receiving veth
//    in namespace b (GRO on, threaded NAPI pinned to CPU1) drops them with: a
//    bare XDP drop program, one that reads the source and drops, the
//    xdp-filter design (a plain kernel HASH of 100k exact /32 source keys:
//    lookup, count, drop; the anchor for what holding CIDRs costs), fleetwall
//    (100k and 1k prefixes), a plain XDP LPM trie of the same 100k, nftables (netdev
//    ingress, interval set of the same 100k prefixes), or, if xdp-tools is
//    installed and no xdp-filter runs on this host, the real xdp-filter
//    (mpps.xdp_filter_10k_drop: listed sources dropped, IPv4 only, its map's 10,000 exact
//    source addresses: the generator's 4096 and others; it is loaded through
//    its own CLI and libxdp's dispatcher, and removed again). One attach helper in
//    namespace b swaps the sinks (native XDP checked every window) while the
//    generator runs; rounds alternate the case order; 300 ms warm-up, 1 s
//    window. Counted at the receiver (ethtool rx_queue_0_xdp_packets); x_bare,
//    x_hash32, x_nft (and x_xdp_filter) are medians of the per-round ratios.
//    mpps_cpu.*: the same windows by the receiving NAPI thread's CPU time per
//    packet (/proc/PID/schedstat): 1000 / ns_per_packet is what one CPU that
//    only ran the receive path would drop. On a shared machine the NAPI thread
//    gets a varying share of CPU1, which the wall-clock rate mostly measures.
//    Traffic (--traffic, all three by default, interleaved in the same rounds):
//    rewrite (the headline mpps.* names): the generator writes the next source
//    into every frame, so the receiver reads a line dirtied on the other CPU;
//    stamped (suffix _stamped): each page of the test-run page pool gets a
//    source once and keeps it (a generation word in the UDP payload), frames
//    are not written per packet; one (suffix _one): a single hot source.
//    anchor_fit.<traffic>: how far the x bare of the sinks built like the
//    issue's anchors (xdp-filter, the /32 hash, the plain trie, nftables)
//    lie from the published figures (0.66, 0.73, 0.50, 0.10): the mean
//    distance, paced (flooded with --no-paced), with fleetwall's x bare beside
//    it. The traffic with the smallest distance is the one most like the
//    anchors' own.
//    --prog-stats: kernel.bpf_stats_enabled on during the windows, the sink
//    program's own ns per run reported as in_program_ns (adds ~20 ns a run).
//    --tx-shift k: the generator transmits one frame in 2^k (diagnostic).
// 4. mpps_paced.*: after each flood window above, the same sink with the
//    generator paced (xdp_gen spins on ktime to one frame per gap): the most
//    the receiver took over a golden-section search of offered rates from 0.8x
//    to 2.5x the flood's received rate (--paced-trials, default 10 trials of
//    250 ms; the flood counts as a candidate). The flood overloads
//    veth (the generator keeps meeting a full ring, the test-run page pool
//    churns pages) and that costs the receiver more the slower the sink is;
//    paced, it does not. Counters for the trials come from /proc/PID/net/dev
//    of the generator (no process start inside a window). During the
//    drop-rate phase this process and its children run on CPU0 (the
//    receiver's CPU1 is left to the NAPI thread) and idle CPUs poll instead of
//    halting (/dev/cpu_dma_latency held at 0; --no-idle-poll turns it off).
//    Each paced figure carries receiver_busy (rate x the NAPI thread's CPU
//    time per packet at the best trial: below 1, the generator set the rate,
//    not the sink) and capacity_x_bare (bare's CPU time per packet over the
//    sink's, per round: what each would drop with a CPU of its own).
//    --no-paced skips the search; --cases REGEX runs only the matching sinks
//    (the ratio bases always run). --compare-live OBJ[,OBJ...] adds sinks on
//    the fleetwall 100k maps, attached the same way: this build's XDP program
//    (mpps.fleetwall_100k_a_drop) and each OBJ's (mpps.fleetwall_100k_b_drop,
//    _c_, ...), each with x_a (its per-round ratio to A): A/B of program
//    changes under live traffic.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type BpfDatapath, openDatapath, removePins } from '../node-agent/src/datapath/bpf-datapath.js';
import { type LoadedObject, loadObject } from '../node-agent/src/datapath/bpf-object.js';
import type { MapOp } from '../node-agent/src/datapath/datapath.js';
import { batchOpts, check, closeFd, possibleCpus, raw, XDP_DROP, XDP_PASS } from '../node-agent/src/datapath/libbpf.js';
import { progTestRun } from '../node-agent/src/datapath/test-run.js';
import { BpfMap } from '../node-agent/src/datapath/bpf-map.js';
import { createNetnsPair, type NetnsPair } from '../test/support/netns.js';
import { checkpoint, runBench, sleep } from './lib/interrupt.js';
import { dotted, entries, hitSources, missSources, nearMissSources, randomOrder, v4Prefix } from './lib/prefix-sets.js';

const root = resolve(import.meta.dirname, '..');
const argv = process.argv.slice(2);
const ROUNDS = Number(argv[argv.indexOf('--rounds') + 1] ?? 0) || 7;
const DO_PPS = !argv.includes('--no-pps');
const DO_MPPS = !argv.includes('--no-mpps');
const TX_SHIFT = Number(argv[argv.indexOf('--tx-shift') + 1] ?? 0) || 0;
const GEN_BATCH = Number(argv[argv.indexOf('--gen-batch') + 1] ?? 0) || 64;
const TRAFFIC = (argv.includes('--traffic') ? argv[argv.indexOf('--traffic') + 1]!.split(',') : ['rewrite', 'stamped', 'one']) as Traffic[];
for (const t of TRAFFIC)
  if (!['rewrite', 'stamped', 'one'].includes(t))
    throw new Error(`--traffic: unknown mode "${t}" (use rewrite, stamped, one, comma-separated)`);
const PROG_STATS = argv.includes('--prog-stats');
const COMPARE = argv.includes('--compare') ? resolve(argv[argv.indexOf('--compare') + 1]!) : '';
const COMPARE_LIVE = argv.includes('--compare-live') ? argv[argv.indexOf('--compare-live') + 1]!.split(',').map((f) => resolve(f)) : [];
// The paced search (--no-paced skips it): the generator's rate is set, not as fast as it can.
const DO_PACED = !argv.includes('--no-paced');
// --cases REGEX: only the drop-rate sinks whose metric matches (the ratios' bases always run).
const CASES = new RegExp(argv.includes('--cases') ? argv[argv.indexOf('--cases') + 1]! : '.');
/** The issue's published x bare figures, by the sink here that is built the same way. */
const ANCHORS: Record<string, number> = {
  'mpps.xdp_filter_10k_drop': 0.66, // xdp-filter, 10k exact addresses
  'mpps.xdp_hash32_100k_drop': 0.73, // XDP /32 hash of 100k
  'mpps.xdp_trie_100k_drop': 0.5, // XDP LPM trie of 100k
  'mpps.nft_100k_drop': 0.1, // nftables interval set
};
const ALWAYS = new Set(['mpps.xdp_bare_drop', 'mpps.xdp_parse_drop', 'mpps.xdp_hash32_100k_drop', 'mpps.nft_100k_drop']);
const IDLE_POLL = !argv.includes('--no-idle-poll') && existsSync('/dev/cpu_dma_latency');
const PACED_TRIALS = Number(argv[argv.indexOf('--paced-trials') + 1] ?? 0) || 10;
const PACED_MAX = 14; // Mpps: above what one generator reaches here
const PACED_TRIAL_MS = 250;
const PACED_SETTLE_MS = 60;
const tag = `${process.pid}-${randomBytes(2).toString('hex')}`;
const pinDirs: string[] = [];
const objects: LoadedObject[] = [];
const datapaths: BpfDatapath[] = [];

function emit(metric: string, value: number, ctx: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ metric, value: Math.round(value * 1000) / 1000, ...ctx })}\n`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function load(): string {
  try {
    return execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

function newPinDir(name: string): string {
  const d = `/sys/fs/bpf/fleetwall-bench-${name}-${tag}`;
  pinDirs.push(d);
  return d;
}

/** A datapath holding n prefixes; counter slots i % 1024, or one per rule (ruleSlots). */
function openSet(
  name: string,
  family: 4 | 6,
  n: number,
  k: number,
  ruleSlots = false,
): { dp: BpfDatapath; pinDir: string; seconds: number } {
  const pinDir = newPinDir(name);
  const slots = ruleSlots ? n : 1024;
  const dp = openDatapath({ pinDir, capacity: { prefixesPerTable: Math.max(n, 1024) + 1024, counterSlots: slots }, maxHashLengths: k });
  datapaths.push(dp);
  const ops: MapOp[] = entries(family, n).map((entry, i) => ({ kind: 'entry.upsert', entry: ruleSlots ? { ...entry, slot: i } : entry }));
  const t0 = process.hrtime.bigint();
  dp.apply(ops);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { dp, pinDir, seconds };
}

/** Rotation-table entries for the random-order cases (the table holds 65536). */
const RANDOM_DRAWS = 65536;

/** A bench variant of a program with its source-rotation table filled (maps named pinPrefix* shared through pinDir). */
function variant(objFile: string, prog: string, sources: Uint8Array[], pinDir?: string, pinPrefix = 'fw_'): number {
  const obj = loadObject(
    objFile.startsWith('/') ? objFile : join(root, 'bpf/bench/obj', objFile),
    pinDir ? { pinDir, pinFilter: (m) => m.startsWith(pinPrefix) } : {},
  );
  objects.push(obj);
  const key = Buffer.alloc(4);
  const val = Buffer.alloc(20);
  const fd = obj.mapFd('bench_srcs');
  sources.forEach((a, i) => {
    key.writeUInt32LE(i, 0);
    val.fill(0);
    if (a.length === 4) val.set(a, 0);
    else val.set(a, 4);
    check(raw.bpf_map_update_elem(fd, key, val, 0n) as number, 'fill', 'bench_srcs');
  });
  const ctl = Buffer.alloc(8);
  ctl.writeUInt32LE(sources.length - 1, 0);
  key.writeUInt32LE(0, 0);
  check(raw.bpf_map_update_elem(obj.mapFd('bench_ctl'), key, ctl, 0n) as number, 'fill', 'bench_ctl');
  return obj.progFd(prog);
}

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

async function perPacket(): Promise<void> {
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
    await checkpoint();
    const hit = hitSources(s.family, s.n, NSRC);
    const frameOf = s.family === 4 ? v4 : v6;
    // fleetwall (K=6), then the plain LPM trie of the bench (suffix _trie) on the same prefixes.
    const { pinDir, seconds } = openSet(s.name, s.family, s.n, 6);
    process.stderr.write(`# loaded ${s.name} (${s.n}) in ${seconds.toFixed(2)} s\n`);
    const triePin = newPinDir(`${s.name}_trie`);
    mkdirSync(triePin, { recursive: true });
    const layouts = [
      {
        suffix: '',
        ctx: { prefixes: s.n, layout: 'hash (K=6) + trie', sources: NSRC },
        fd: (src: Uint8Array[]) => variant('xdp_ingress_vary.bpf.o', 'fw_xdp_ingress', src, pinDir),
        pinDir,
      },
      {
        suffix: '_trie',
        ctx: { prefixes: s.n, layout: 'plain lpm trie (bench program trie_drop)', sources: NSRC },
        fd: (src: Uint8Array[]) => variant('bare_vary.bpf.o', 'trie_drop', src, triePin, 'trie'),
        pinDir: undefined,
      },
    ];
    for (const l of layouts) {
      const ctx = l.ctx;
      runs.push({
        metric: `ns_per_packet.${s.name}_hit${l.suffix}`,
        fd: l.fd(hit),
        frame: frameOf,
        ctx,
        pinDir: l.pinDir,
        sources: hit,
        expect: 'drop',
      });
      if (l.suffix === '_trie') fillTrie(triePin, s.family, s.n);
      if (s.name === 'v4_1m' && l.suffix === '') {
        const rnd = randomOrder(hit, RANDOM_DRAWS);
        runs.push({
          metric: 'ns_per_packet.v4_1m_hit_random_order',
          fd: l.fd(rnd),
          frame: v4,
          ctx: { ...ctx, sources: `${NSRC}, in a random order of ${RANDOM_DRAWS}`, baseline: 'baseline_random_order' },
          pinDir: l.pinDir,
          sources: rnd,
        });
      }
      if (s.miss) {
        const miss = missSources(NSRC);
        runs.push({
          metric: `ns_per_packet.${s.name}_miss${l.suffix}`,
          fd: l.fd(miss),
          frame: v4,
          ctx,
          pinDir: l.pinDir,
          sources: miss,
          expect: 'pass',
        });
        const near = nearMissSources(s.n, NSRC);
        runs.push({
          metric: `ns_per_packet.${s.name}_miss_near${l.suffix}`,
          fd: l.fd(near),
          frame: v4,
          ctx: { ...ctx, sources: `${NSRC}, next to listed ones (same /16, unlisted)` },
          pinDir: l.pinDir,
          sources: near,
          expect: 'pass',
        });
      }
    }
  }
  // What the headline leaves out, on the v4 1M set: one counter slot per rule; 16384 sources.
  {
    await checkpoint();
    const { pinDir, seconds } = openSet('v4_1m_rule_slots', 4, 1_000_000, 6, true);
    process.stderr.write(`# loaded v4_1m with one counter slot per rule in ${seconds.toFixed(2)} s\n`);
    runs.push({
      metric: 'ns_per_packet.v4_1m_hit_rule_slots',
      fd: variant('xdp_ingress_vary.bpf.o', 'fw_xdp_ingress', hitSources(4, 1_000_000, NSRC), pinDir),
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
      fd: variant('xdp_ingress_vary.bpf.o', 'fw_xdp_ingress', hitSources(4, 1_000_000, big), pinDir),
      frame: v4,
      ctx: { prefixes: 1_000_000, layout: 'hash (K=6) + trie', sources: big, counter_slots: 1_000_000, baseline: 'baseline_16k_sources' },
    });
  }
  // --compare OBJ: every fleetwall case again with another build of the vary
  // object (suffix _b), interleaved with the first: an A/B of a program change.
  if (COMPARE) {
    for (const run of [...runs]) {
      if (!run.pinDir || !run.sources) continue;
      runs.push({
        ...run,
        metric: `${run.metric}_b`,
        fd: variant(COMPARE, 'fw_xdp_ingress', run.sources, run.pinDir),
        ctx: { ...run.ctx, object: COMPARE },
      });
    }
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
    emit(run.metric, m, {
      ...run.ctx,
      // The ratio of the medians, and the median of the per-round ratios (the rounds interleave every case).
      x_baseline: Math.round((m / median(bs)) * 100) / 100,
      x_baseline_rounds: Math.round(median(xs.map((x, i) => x / bs[i]!)) * 100) / 100,
      rounds: xs.length,
      min: Math.min(...xs),
      max: Math.max(...xs),
    });
  }
  // Release the big sets before the next phase.
  for (const o of objects.splice(0)) o.close();
  for (const dp of datapaths.splice(0)) dp.close();
  for (const d of pinDirs.splice(0)) removePins(d);
}

async function loadTime(): Promise<void> {
  const xs: number[] = [];
  for (let i = 0; i < 3; i++) {
    await checkpoint();
    const { dp, pinDir, seconds } = openSet(`load${i}`, 4, 1_000_000, 6);
    xs.push(seconds);
    dp.close();
    datapaths.splice(datapaths.indexOf(dp), 1);
    removePins(pinDir);
    pinDirs.splice(pinDirs.indexOf(pinDir), 1);
  }
  emit('seconds.load_1m_prefixes', median(xs), {
    runs: xs.map((x) => Math.round(x * 1000) / 1000),
    prefixes: 1_000_000,
    shape: '500k /32 + 500k /24, one apply() call, bucketed hash written through mmap',
  });
}

// ---------------------------------------------------------------- drop rate on veth

function sh(bed: NetnsPair, side: 'a' | 'b', cmd: string): string {
  const r = bed.execSync(side, ['sh', '-c', cmd]);
  if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return r.stdout;
}

function ethtoolStats(bed: NetnsPair, side: 'a' | 'b', ifname: string): Map<string, number> {
  const out = sh(bed, side, `ethtool -S ${ifname}`);
  const m = new Map<string, number>();
  for (const line of out.split('\n')) {
    const x = /^\s*([\w]+):\s+(\d+)/.exec(line);
    if (x) m.set(x[1]!, Number(x[2]));
  }
  return m;
}

/** The receiving veth's NAPI kthreads (threaded NAPI), pinned to CPU1. */
function napiThreads(bed: NetnsPair): string[] {
  const ps = execFileSync('ps', ['-eo', 'pid,comm'], { encoding: 'utf8' });
  const want = `napi/${bed.b.ifname}`.slice(0, 15);
  const pids: string[] = [];
  for (const line of ps.split('\n')) {
    const [pid, comm] = line.trim().split(/\s+/);
    if (pid && comm?.startsWith(want)) pids.push(pid);
  }
  return pids;
}

function pinNapi(pids: string[]): void {
  for (const pid of pids) execFileSync('taskset', ['-pc', '1', pid], { stdio: 'ignore' });
}

/** CPU time (ns) the threads have run (schedstat: time on CPU). */
function cpuTimeNs(pids: string[]): number {
  let t = 0;
  for (const pid of pids) {
    try {
      t += Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* thread gone */
    }
  }
  return t;
}

function runNode(bed: NetnsPair, side: 'a' | 'b', script: string, args: string[], cpu?: number) {
  const pre = cpu === undefined ? [] : ['taskset', '-c', String(cpu)];
  return bed.spawn(side, [...pre, process.execPath, '--import', 'tsx', join(root, script), ...args], { cwd: root });
}

/** A child speaking JSON lines: one request, one reply. */
function jsonChild(child: import('node:child_process').ChildProcess) {
  let buf = '';
  let err = '';
  const replies: string[] = [];
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      replies.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.once('exit', () => {
    for (const w of waiters.splice(0)) w();
  });
  const next = async (): Promise<Record<string, unknown>> => {
    while (replies.length === 0) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`helper exited: ${err}`);
      await new Promise<void>((r) => waiters.push(r));
    }
    return JSON.parse(replies.shift()!) as Record<string, unknown>;
  };
  return {
    next,
    async call(req: Record<string, unknown>): Promise<unknown> {
      child.stdin!.write(`${JSON.stringify(req)}\n`);
      const r = await next();
      if (!r.ok) throw new Error(`${req.op}: ${String(r.error)}`);
      return r.res;
    },
  };
}

type Traffic = 'stamped' | 'rewrite' | 'one';

/** The generator's control word (struct gen_cfg): traffic mode and pacing. */
let stampGen = 0;
const gen = { stamp: 0, gapPs: 0 };
function writeGenCtl(pin: string): void {
  const fd = check(raw.bpf_obj_get(`${pin}_ctl`) as number, 'open pinned map', `${pin}_ctl`);
  try {
    const val = Buffer.alloc(16);
    val.writeUInt32LE(TX_SHIFT, 0);
    val.writeUInt32LE(gen.stamp, 4);
    val.writeUInt32LE(gen.gapPs, 8);
    check(raw.bpf_map_update_elem(fd, Buffer.alloc(4), val, 0n) as number, 'set', `${pin}_ctl`);
  } finally {
    closeFd(fd);
  }
}

/** Sets the traffic mode (unpaced); stamped mode gets a new generation so every page is stamped again. */
function setTraffic(pin: string, mode: Traffic): void {
  gen.stamp = mode === 'rewrite' ? 0 : ++stampGen;
  gen.gapPs = 0;
  writeGenCtl(pin);
}

/** Paces the generator at rate Mpps (0: as fast as it can). */
function setRate(pin: string, mpps: number): void {
  gen.gapPs = mpps > 0 ? Math.round(1e6 / mpps) : 0;
  writeGenCtl(pin);
}

/**
 * The sending veth's counters, read from the root namespace through a process
 * inside namespace a (/proc/PID/net/dev: no process start, so a window is
 * timed to the microsecond). veth reports there, for the sender: tx_packets =
 * frames the peer's XDP received, tx_dropped = frames refused by the peer's
 * full ring (ethtool's xdp_xmit_errors).
 */
function senderCounters(pid: number, ifname: string): { rx: number; lost: number; at: bigint } {
  const text = readFileSync(`/proc/${pid}/net/dev`, 'utf8');
  const at = process.hrtime.bigint();
  const line = text.split('\n').find((l) => l.trim().startsWith(`${ifname}:`));
  if (!line) throw new Error(`${ifname} not in /proc/${pid}/net/dev`);
  const f = line
    .slice(line.indexOf(':') + 1)
    .trim()
    .split(/\s+/)
    .map(Number);
  return { rx: f[9]!, lost: f[11]!, at };
}

/** Frames the generator has stamped so far (all CPUs). */
function stamps(pin: string): number {
  const fd = check(raw.bpf_obj_get(`${pin}_stamps`) as number, 'open pinned map', `${pin}_stamps`);
  try {
    const val = Buffer.alloc(8 * possibleCpus());
    check(raw.bpf_map_lookup_elem(fd, Buffer.alloc(4), val) as number, 'read', `${pin}_stamps`);
    let n = 0n;
    for (let i = 0; i < val.length; i += 8) n += val.readBigUInt64LE(i);
    return Number(n);
  } finally {
    closeFd(fd);
  }
}

/** Sum of run_time_ns and run_cnt over the XDP sink programs (kernel.bpf_stats_enabled=1), by bpftool. */
function progStats(): { ns: number; cnt: number } {
  if (!PROG_STATS) return { ns: 0, cnt: 0 };
  const names = new Set(['bare_drop', 'bare_parse_drop', 'hash32_drop', 'trie_drop', 'fw_xdp_ingress']);
  let ns = 0;
  let cnt = 0;
  try {
    const all = JSON.parse(execFileSync('bpftool', ['prog', 'show', '--json'], { encoding: 'utf8' })) as Array<{
      name?: string;
      run_time_ns?: number;
      run_cnt?: number;
    }>;
    for (const p of all)
      if (p.name && names.has(p.name)) {
        ns += p.run_time_ns ?? 0;
        cnt += p.run_cnt ?? 0;
      }
  } catch {
    /* no bpftool */
  }
  return { ns, cnt };
}

function writeSources(pin: string, sources: Uint8Array[]): void {
  const fd = check(raw.bpf_obj_get(pin) as number, 'open pinned map', pin);
  try {
    const key = Buffer.alloc(4);
    const val = Buffer.alloc(20);
    sources.forEach((a, i) => {
      key.writeUInt32LE(i, 0);
      val.fill(0);
      val.set(a, 0);
      check(raw.bpf_map_update_elem(fd, key, val, 0n) as number, 'fill', pin);
    });
  } finally {
    closeFd(fd);
  }
}

/**
 * The keys of the xdp-filter-style sink: the n prefixes as exact addresses
 * (the /32s as they are; one address inside each /24: the generator's
 * source where it sends from that /24, else the /24's first address).
 * Every generated packet hits, as with fleetwall.
 */
/** Fills the plain trie of the bench (trie4_srcs / trie6_srcs, pinned in pinDir or given by fd) with the n prefixes of a set. */
function fillTrie(where: string | number, family: 4 | 6, n: number): void {
  const name = family === 4 ? 'trie4_srcs' : 'trie6_srcs';
  const fd = typeof where === 'number' ? where : check(raw.bpf_obj_get(`${where}/${name}`) as number, 'open pinned map', name);
  try {
    const ks = family === 4 ? 8 : 20;
    const es = entries(family, n);
    const CH = 65536;
    const k = Buffer.alloc(CH * ks);
    const v = Buffer.alloc(CH * 8);
    for (let off = 0; off < es.length; off += CH) {
      const m = Math.min(CH, es.length - off);
      for (let i = 0; i < m; i++) {
        const p = es[off + i]!.prefix;
        k.writeUInt32LE(p.len, i * ks);
        k.set(p.bytes, i * ks + 4);
      }
      const count = new Uint32Array([m]);
      check(raw.bpf_map_update_batch(fd, k, v, count, batchOpts(0n)) as number, 'fill', name);
      if (count[0] !== m) throw new Error(`${name}: ${count[0]} of ${m} prefixes written`);
    }
  } finally {
    if (typeof where !== 'number') closeFd(fd);
  }
}

function hash32Keys(n: number, sources: Uint8Array[]): number[] {
  const keys = new Set<number>();
  const half = Math.floor(n / 2);
  for (let i = 0; i < half; i++) keys.add(Buffer.from(v4Prefix(i, n).bytes).readUInt32BE(0));
  const covered = new Set<number>();
  for (const s of sources) {
    const a = Buffer.from(s).readUInt32BE(0);
    if (keys.has(a)) continue;
    keys.add(a);
    covered.add(a >>> 8);
  }
  for (let i = half; i < n && keys.size < n; i++) {
    const a = Buffer.from(v4Prefix(i, n).bytes).readUInt32BE(0);
    if (!covered.has(a >>> 8)) keys.add(a);
  }
  for (const s of sources) if (!keys.has(Buffer.from(s).readUInt32BE(0))) throw new Error('a generator source is not a hash32 key');
  return [...keys];
}

function fillHash32(fd: number, keys: number[]): void {
  const k = Buffer.alloc(keys.length * 4);
  keys.forEach((a, i) => k.writeUInt32BE(a >>> 0, i * 4)); // the address bytes as in the packet
  const v = Buffer.alloc(keys.length * 8);
  const count = new Uint32Array([keys.length]);
  check(raw.bpf_map_update_batch(fd, k, v, count, batchOpts(0n)) as number, 'fill', 'hash32_srcs');
  if (count[0] !== keys.length) throw new Error(`hash32_srcs: ${count[0]} of ${keys.length} keys written`);
}

/** xdp-filter's pins (a fixed path: one instance per host). */
const XDP_FILTER_PINS = '/sys/fs/bpf/xdp-filter';

/** True if xdp-filter (xdp-tools) is installed and not in use on this host (the bench must not touch a real one). */
function xdpFilterUsable(): boolean {
  try {
    execFileSync('xdp-filter', ['help'], { stdio: 'ignore' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
  }
  return !existsSync(XDP_FILTER_PINS);
}

/** Runs xdp-filter in namespace b with the host's bpffs (nsenter --net; `ip netns exec` would hide /sys/fs/bpf). */
function xdpFilter(bed: NetnsPair, args: string[]): void {
  const [cmd, ...rest] = [...bed.nsenter('b'), 'xdp-filter', ...args];
  execFileSync(cmd!, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Fills xdp-filter's IPv4 map (a per-CPU hash of address -> flags + hit
 * count) with `keys` as source-address rules (flag 1), as many as it holds.
 * The keys are the address bytes as in the packet.
 */
function fillXdpFilter(keys: number[]): void {
  const m = BpfMap.fromPin(`${XDP_FILTER_PINS}/filter_ipv4`, 'filter_ipv4');
  try {
    const n = Math.min(keys.length, m.maxEntries);
    const k = Buffer.alloc(n * 4);
    for (let i = 0; i < n; i++) k.writeUInt32BE(keys[i]! >>> 0, i * 4);
    const v = Buffer.alloc(n * m.valueStride);
    for (let off = 0; off < v.length; off += 8) v.writeBigUInt64LE(1n, off); // MAP_FLAG_SRC on every CPU
    const r = m.updateBatch(k, v, n);
    if (r.errno !== 0 || r.done !== n) throw new Error(`xdp-filter map: ${r.done} of ${n} written (errno ${r.errno})`);
  } finally {
    m.close();
  }
}

/** Packets xdp-filter dropped since it was loaded (its xdp_stats_map, per CPU, index XDP_DROP). */
function xdpFilterDrops(): bigint {
  const m = BpfMap.fromPin(`${XDP_FILTER_PINS}/xdp_stats_map`, 'xdp_stats_map');
  try {
    const v = m.lookupU32(1)!;
    const per = m.valueStride / possibleCpus();
    let sum = 0n;
    for (let off = 0; off < v.length; off += per) sum += v.readBigUInt64LE(off); // {rx_packets, rx_bytes}
    return sum;
  } finally {
    m.close();
  }
}

/** Sum of the u64 hit counts of an anchor's map (hash32_srcs: 4-byte keys, trie4_srcs: 8). */
function sumHits(fd: number, keySize: number): bigint {
  const key = Buffer.alloc(keySize);
  const next = Buffer.alloc(keySize);
  const val = Buffer.alloc(8);
  let sum = 0n;
  let prev: Buffer | null = null;
  while ((raw.bpf_map_get_next_key(fd, prev, next) as number) === 0) {
    next.copy(key);
    if ((raw.bpf_map_lookup_elem(fd, key, val) as number) === 0) sum += val.readBigUInt64LE(0);
    prev = key;
  }
  return sum;
}

async function dropRates(): Promise<void> {
  const N = 100_000;
  const WINDOW_MS = 1000;
  const WARMUP_MS = 300;
  const bed = createNetnsPair({ tag: 'bench' });
  const nftFile = join(tmpdir(), `fw-bench-nft-${tag}.nft`);
  const children: Array<import('node:child_process').ChildProcess> = [];
  const statsSysctl = '/proc/sys/kernel/bpf_stats_enabled';
  const statsBefore = readFileSync(statsSysctl, 'utf8').trim();
  let qosFd = -1;
  /** The bench loads xdp-filter (installed, and no other instance on the host): then it also cleans up after it. */
  let useXdpFilter = false;
  const libxdpDirBefore = existsSync('/sys/fs/bpf/xdp');
  // --prog-stats: the kernel times every program run (adds about 20 ns to each XDP run).
  if (PROG_STATS) writeFileSync(statsSysctl, '1');
  try {
    const ifb = bed.b.ifname;
    sh(bed, 'b', `ethtool -K ${ifb} gro on && echo 1 > /sys/class/net/${ifb}/threaded`);
    // Idle CPUs poll instead of halting while the file stays open (PM QoS), so the
    // receiver's NAPI thread, which sleeps between paced bursts, wakes without a vCPU
    // halt in between (not measured on its own: --no-idle-poll turns it off).
    if (IDLE_POLL) {
      qosFd = openSync('/dev/cpu_dma_latency', 'w');
      writeSync(qosFd, Buffer.alloc(4));
    }
    // This process and every child it starts (helpers, ethtool) on the generator's CPU: CPU1 is the receiver's.
    execFileSync('taskset', ['-a', '-pc', '0', String(process.pid)], { stdio: 'ignore' });

    // The sinks.
    const fw = openSet('drop-fw', 4, N, 6);
    const small = openSet('drop-fw1k', 4, 1000, 6);
    const barePin = newPinDir('drop-bare');
    execFileSync('mkdir', ['-p', barePin]);
    const bare = loadObject(join(root, 'bpf/bench/obj/bare.bpf.o'));
    objects.push(bare);
    check(raw.bpf_obj_pin(bare.progFd('bare_drop'), `${barePin}/prog`) as number, 'pin', barePin);
    check(raw.bpf_obj_pin(bare.progFd('bare_parse_drop'), `${barePin}/parse`) as number, 'pin', barePin);
    // The xdp-filter-style anchor: the same 100k prefixes as exact /32 keys in a kernel HASH.
    const bigSources = hitSources(4, N, 4096);
    const keys = hash32Keys(N, bigSources);
    fillHash32(bare.mapFd('hash32_srcs'), keys);
    // xdp-filter: the generator's sources first, then other exact keys, as many as its map holds.
    useXdpFilter = xdpFilterUsable();
    let xdpFilterDropped = 0n;
    const filterKeys = [...new Set([...bigSources.map((a) => Buffer.from(a).readUInt32BE(0)), ...keys])];
    if (!useXdpFilter)
      process.stderr.write(`# xdp-filter: not installed or already in use on this host (${XDP_FILTER_PINS}): its case is skipped\n`);
    check(raw.bpf_obj_pin(bare.progFd('hash32_drop'), `${barePin}/hash32`) as number, 'pin', barePin);
    // The plain LPM trie anchor: the same 100k prefixes in the bench's trie_drop program.
    fillTrie(bare.mapFd('trie4_srcs'), 4, N);
    check(raw.bpf_obj_pin(bare.progFd('trie_drop'), `${barePin}/trie`) as number, 'pin', barePin);
    // --compare-live: this build and each other build of the fleetwall program on the same maps, attached alike.
    const abPrograms: Array<[string, string]> = COMPARE_LIVE.length
      ? [['a', join(root, 'bpf/obj/xdp_ingress.bpf.o')], ...COMPARE_LIVE.map((f, i): [string, string] => [String.fromCharCode(98 + i), f])]
      : [];
    for (const [ab, file] of abPrograms) {
      const o = loadObject(file, { pinDir: fw.pinDir, pinFilter: (m) => m.startsWith('fw_') });
      objects.push(o);
      check(raw.bpf_obj_pin(o.progFd('fw_xdp_ingress'), `${barePin}/fw_${ab}`) as number, 'pin', barePin);
    }
    process.stderr.write(`# hash32: ${keys.length} exact keys (50k /32s; one address per /24, the generator's where it sends from one)\n`);
    const elems: string[] = [];
    for (let i = 0; i < N; i++) {
      const p = v4Prefix(i, N);
      const v = Buffer.from(p.bytes).readUInt32BE(0);
      elems.push(p.len === 32 ? dotted(v) : `${dotted(v)}/24`);
    }
    writeFileSync(
      nftFile,
      [
        'table netdev fwbench {',
        '  set blk {',
        '    type ipv4_addr',
        '    flags interval',
        `    elements = { ${elems.join(', ')} }`,
        '  }',
        '  chain ingress {',
        `    type filter hook ingress device "${ifb}" priority -500; policy accept;`,
        '    ip saddr @blk counter drop',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    const t0 = Date.now();
    sh(bed, 'b', `nft -f ${nftFile}`);
    process.stderr.write(
      `# nft set of ${N} loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s (its hook sees only what XDP passes: nothing, in the XDP cases)\n`,
    );

    // One attach helper in namespace b for every swap, one generator for every case.
    const helperProc = runNode(bed, 'b', 'bench/lib/attach-helper.ts', ['serve', ifb]);
    children.push(helperProc);
    const helper = jsonChild(helperProc);
    await helper.next(); // ready
    const smallSources = hitSources(4, 1000, 4096);
    const srcPin = `${barePin}/gen_srcs`;
    const genProc = runNode(
      bed,
      'a',
      'bench/lib/xdp-gen.ts',
      [
        JSON.stringify({
          ifname: bed.a.ifname,
          srcMac: bed.a.mac,
          dstMac: bed.b.mac,
          dst: bed.b.v4,
          sources: bigSources.map((a) => Buffer.from(a).toString('hex')),
          srcPin,
          txShift: TX_SHIFT,
          batch: GEN_BATCH,
        }),
      ],
      0,
    );
    children.push(genProc);
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      genProc.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        if (buf.includes('ready')) resolve();
      });
      genProc.once('exit', (c) => reject(new Error(`generator exited ${c}`)));
    });

    const linkPin = `${barePin}/link`;
    type Case = {
      metric: string;
      attach: () => Promise<unknown>;
      detach: () => Promise<unknown>;
      ctx: Record<string, unknown>;
      sources: 'big' | 'small';
      xdp: boolean;
    };
    const progCase = (metric: string, pin: string, sink: string): Case => ({
      metric,
      attach: () => helper.call({ op: 'prog', pin, linkPin }),
      detach: () => helper.call({ op: 'unprog', linkPin }),
      ctx: { sink },
      sources: 'big',
      xdp: true,
    });
    const fwCase = (metric: string, pinDir: string, sink: string, sources: 'big' | 'small'): Case => ({
      metric,
      attach: async () => {
        const r = (await helper.call({ op: 'fleetwall', pinDir })) as { xdpMode: string };
        if (r.xdpMode !== 'native') throw new Error(`fleetwall attached in ${r.xdpMode} mode`);
      },
      detach: () => helper.call({ op: 'unfleetwall', pinDir }),
      ctx: { sink },
      sources,
      xdp: true,
    });
    const cases: Case[] = [
      progCase('mpps.xdp_bare_drop', `${barePin}/prog`, 'bare XDP count-and-drop (does not read the packet)'),
      progCase('mpps.xdp_parse_drop', `${barePin}/parse`, 'bare XDP that reads the IPv4 source, then drops (no lookup)'),
      progCase(
        'mpps.xdp_hash32_100k_drop',
        `${barePin}/hash32`,
        'xdp-filter style: kernel HASH of the same 100k as exact /32 source keys (lookup, count, drop)',
      ),
      fwCase('mpps.fleetwall_100k_drop', fw.pinDir, 'fleetwall XDP, 50k /32 + 50k /24, hash (K=6) + trie', 'big'),
      ...abPrograms.map(([ab, file]) =>
        progCase(
          `mpps.fleetwall_100k_${ab}_drop`,
          `${barePin}/fw_${ab}`,
          `fleetwall 100k maps, program ${file}, attached as a plain XDP link`,
        ),
      ),
      fwCase('mpps.fleetwall_1k_drop', small.pinDir, 'fleetwall XDP, 500 /32 + 500 /24 (traffic from that set)', 'small'),
      progCase('mpps.xdp_trie_100k_drop', `${barePin}/trie`, 'plain XDP LPM trie of the same 100k prefixes (lookup, count, drop)'),
      {
        metric: 'mpps.nft_100k_drop',
        attach: async () => null,
        detach: async () => null,
        ctx: { sink: 'nftables netdev ingress, interval set of the same 100k' },
        sources: 'big',
        xdp: false,
      },
      ...(useXdpFilter
        ? [
            {
              metric: 'mpps.xdp_filter_10k_drop',
              attach: async () => {
                xdpFilter(bed, ['load', '-m', 'native', '-f', 'ipv4', ifb]); // policy allow: listed addresses drop
                fillXdpFilter(filterKeys);
              },
              detach: async () => {
                const dropped = xdpFilterDrops();
                if (dropped === 0n) throw new Error('xdp-filter dropped nothing: its rules did not match the traffic');
                xdpFilterDropped += dropped;
                xdpFilter(bed, ['unload', ifb]);
              },
              ctx: {
                sink: "xdp-filter (xdp-tools), default policy allow (listed sources drop), IPv4: 10,000 exact source addresses (its map size), the generator's among them; through libxdp's dispatcher",
              },
              sources: 'big' as const,
              xdp: true,
            },
          ]
        : []),
    ];
    type Trial = { target: number; mpps: number; offered: number; cpuNs: number; progNs: number };
    type Sample = {
      mpps: number;
      offered: number;
      loss: number;
      cpuNs: number;
      util: number;
      progNs: number;
      stamps: number;
      paced: number;
      pacedCpuNs: number;
      pacedProgNs: number;
      trials: Trial[];
    };
    const genPid = genProc.pid!;
    const ifa = bed.a.ifname;
    /** One paced window: the rate the generator offered and the rate the receiver took. */
    const trial = async (target: number, pids: string[]): Promise<Trial> => {
      setRate(srcPin, target);
      await sleep(PACED_SETTLE_MS);
      const ps0 = progStats();
      const cpu0 = cpuTimeNs(pids);
      const c0 = senderCounters(genPid, ifa);
      await sleep(PACED_TRIAL_MS);
      const c1 = senderCounters(genPid, ifa);
      const cpu1 = cpuTimeNs(pids);
      const ps1 = progStats();
      const secs = Number(c1.at - c0.at) / 1e9;
      const rx = c1.rx - c0.rx;
      const lost = c1.lost - c0.lost;
      return {
        target,
        mpps: rx / secs / 1e6,
        offered: (rx + lost) / secs / 1e6,
        cpuNs: (cpu1 - cpu0) / Math.max(1, rx),
        progNs: (ps1.ns - ps0.ns) / Math.max(1, ps1.cnt - ps0.cnt),
      };
    };
    /**
     * The paced rate: the most the receiver takes when the generator is paced
     * instead of flooding. The received rate rises with the offered rate up to
     * what the sink can take, then falls (overload: the generator keeps hitting
     * the full veth ring, the page pool churns), so its peak is found by a
     * golden-section search over the offered rate from 0.8x the flood's
     * received rate to 2.5x it (or the flood's offered rate, if higher). The unpaced window counts
     * as a candidate (a sink faster than the generator peaks there).
     * Not a zero-loss rate: this VM stalls a CPU for 50-250 us several
     * times a second, and the 256-frame veth ring then loses 0.1-2% at any
     * rate above ~1.5 Mpps, even into a bare drop.
     */
    const pacedRate = async (
      unpaced: { mpps: number; offered: number },
      pids: string[],
    ): Promise<{ paced: number; best?: Trial; trials: Trial[] }> => {
      const trials: Trial[] = [];
      const g = (Math.sqrt(5) - 1) / 2;
      // The flood's offered rate can be below the sink's peak (the full ring slows the
      // generator): search up to 2.5x what the flood delivered, at most PACED_MAX.
      let a = unpaced.mpps * 0.8;
      let b = Math.min(PACED_MAX, Math.max(unpaced.offered, unpaced.mpps * 2.5));
      const at = async (x: number) => {
        const t = await trial(x, pids);
        trials.push(t);
        return t.mpps;
      };
      try {
        let x1 = b - g * (b - a);
        let x2 = a + g * (b - a);
        let f1 = await at(x1);
        let f2 = await at(x2);
        for (let i = 2; i < PACED_TRIALS; i++) {
          if (f1 >= f2) {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - g * (b - a);
            f1 = await at(x1);
          } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + g * (b - a);
            f2 = await at(x2);
          }
        }
      } finally {
        setRate(srcPin, 0);
      }
      const best = trials.reduce((m, t) => (t.mpps > m.mpps ? t : m));
      return { paced: Math.max(unpaced.mpps, best.mpps), best: best.mpps > unpaced.mpps ? best : undefined, trials };
    };
    const samples = new Map<string, Sample[]>();
    let current = 'big/rewrite';
    /** Samples are kept per case and traffic mode. */
    const key = (metric: string, t: Traffic) => `${metric}@${t}`;
    const ran = cases.filter((c) => CASES.test(c.metric) || ALWAYS.has(c.metric));
    const windows = TRAFFIC.flatMap((t) => ran.map((c) => ({ t, c })));
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate the order so no case (and no traffic mode) always follows the same one.
      for (const { t, c } of r % 2 === 0 ? windows : [...windows].reverse()) {
        await checkpoint();
        if (`${c.sources}/${t}` !== current) {
          const list = c.sources === 'big' ? bigSources : smallSources;
          writeSources(srcPin, t === 'one' ? list.map(() => list[0]!) : list);
          current = `${c.sources}/${t}`;
        }
        setTraffic(srcPin, t);
        const st0 = stamps(srcPin);
        await c.attach();
        try {
          const mode = (await helper.call({ op: 'mode' })) as { mode: string };
          if (mode.mode !== (c.xdp ? 'native' : 'none')) throw new Error(`${c.metric}: XDP mode on ${ifb} is ${mode.mode}`);
          const pids = napiThreads(bed);
          pinNapi(pids);
          await sleep(WARMUP_MS);
          const rx0 = ethtoolStats(bed, 'b', ifb);
          const tx0 = ethtoolStats(bed, 'a', bed.a.ifname);
          const cpu0 = cpuTimeNs(pids);
          const ps0 = progStats();
          const t0n = process.hrtime.bigint();
          await sleep(WINDOW_MS);
          const rx1 = ethtoolStats(bed, 'b', ifb);
          const tx1 = ethtoolStats(bed, 'a', bed.a.ifname);
          const cpu1 = cpuTimeNs(pids);
          const ps1 = progStats();
          const secs = Number(process.hrtime.bigint() - t0n) / 1e9;
          const got = rx1.get('rx_queue_0_xdp_packets')! - rx0.get('rx_queue_0_xdp_packets')!;
          const sent = ['tx_queue_0_xdp_xmit', 'tx_queue_0_xdp_xmit_errors'].reduce((s, k) => s + (tx1.get(k) ?? 0) - (tx0.get(k) ?? 0), 0);
          const smp: Sample = {
            mpps: got / secs / 1e6,
            offered: sent / secs / 1e6,
            loss: ((tx1.get('tx_queue_0_xdp_xmit_errors') ?? 0) - (tx0.get('tx_queue_0_xdp_xmit_errors') ?? 0)) / Math.max(1, sent),
            cpuNs: (cpu1 - cpu0) / got,
            util: (cpu1 - cpu0) / 1e9 / secs,
            progNs: (ps1.ns - ps0.ns) / Math.max(1, ps1.cnt - ps0.cnt),
            stamps: stamps(srcPin) - st0,
            paced: 0,
            pacedCpuNs: 0,
            pacedProgNs: 0,
            trials: [],
          };
          if (DO_PACED) {
            const n = await pacedRate(smp, pids);
            smp.paced = n.paced;
            smp.trials = n.trials;
            smp.pacedCpuNs = n.best ? n.best.cpuNs : smp.cpuNs;
            smp.pacedProgNs = n.best ? n.best.progNs : smp.progNs;
          }
          samples.set(key(c.metric, t), [...(samples.get(key(c.metric, t)) ?? []), smp]);
          process.stderr.write(
            `# round ${r + 1} ${key(c.metric, t)}: ${smp.mpps.toFixed(2)} Mpps, receiver ${smp.cpuNs.toFixed(0)} ns/packet of CPU (busy ${(smp.util * 100).toFixed(0)}%), offered ${smp.offered.toFixed(2)} Mpps${PROG_STATS ? `, in-program ${smp.progNs.toFixed(0)} ns` : ''}, frames stamped ${smp.stamps}, ring loss ${(smp.loss * 100).toFixed(1)}%${DO_PACED ? `; paced ${smp.paced.toFixed(2)} Mpps (offered:received ${smp.trials.map((x) => `${x.offered.toFixed(2)}:${x.mpps.toFixed(2)}`).join(' ')})` : ''}\n`,
          );
        } finally {
          await c.detach();
        }
      }
    }
    // The anchor dropped what it was sent (a miss would pass the packet up the stack: another measurement).
    const hits = sumHits(bare.mapFd('hash32_srcs'), 4);
    if ([...samples.keys()].some((m) => m.startsWith('mpps.xdp_hash32_100k_drop@')) && hits === 0n)
      throw new Error('the hash32 sink counted no hit');
    process.stderr.write(`# hash32: ${hits} packets hit and dropped over its windows (and warm-ups)\n`);
    const trieHits = sumHits(bare.mapFd('trie4_srcs'), 8);
    if ([...samples.keys()].some((m) => m.startsWith('mpps.xdp_trie_100k_drop@')) && trieHits === 0n)
      throw new Error('the trie sink counted no hit');
    process.stderr.write(`# trie: ${trieHits} packets hit and dropped over its windows (and warm-ups)\n`);
    if (useXdpFilter) process.stderr.write(`# xdp-filter: ${xdpFilterDropped} packets dropped over its windows (and warm-ups)\n`);
    const of = (m: string) => samples.get(m)!;
    const ratio = (m: string, base: string, f: (s: Sample) => number, inv = false) =>
      Math.round(median(of(m).map((s, i) => (inv ? f(of(base)[i]!) / f(s) : f(s) / f(of(base)[i]!)))) * 100) / 100;
    const named = (metric: string, t: Traffic) => (t === 'rewrite' ? metric : `${metric}_${t}`);
    // Against the real xdp-filter, when it ran, and (--compare-live) against build A.
    const peers = (m: string, t: Traffic, f: (s: Sample) => number, inverse = false) => ({
      ...(samples.has(key('mpps.xdp_filter_10k_drop', t))
        ? { x_xdp_filter: ratio(key(m, t), key('mpps.xdp_filter_10k_drop', t), f, inverse) }
        : {}),
      // --compare-live: every other build against this one (A).
      ...(/^mpps\.fleetwall_100k_[b-z]_drop$/.test(m) ? { x_a: ratio(key(m, t), key('mpps.fleetwall_100k_a_drop', t), f, inverse) } : {}),
    });
    for (const t of TRAFFIC) {
      const k = (m: string) => key(m, t);
      for (const c of ran) {
        const xs = of(k(c.metric));
        emit(named(c.metric, t), median(xs.map((s) => s.mpps)), {
          ...c.ctx,
          traffic: t,
          x_bare: ratio(k(c.metric), k('mpps.xdp_bare_drop'), (s) => s.mpps),
          x_parse: ratio(k(c.metric), k('mpps.xdp_parse_drop'), (s) => s.mpps),
          x_hash32: ratio(k(c.metric), k('mpps.xdp_hash32_100k_drop'), (s) => s.mpps),
          x_nft: ratio(k(c.metric), k('mpps.nft_100k_drop'), (s) => s.mpps),
          ...peers(c.metric, t, (s) => s.mpps),
          offered_mpps: Math.round(median(xs.map((s) => s.offered)) * 100) / 100,
          receiver_busy: Math.round(median(xs.map((s) => s.util)) * 100) / 100,
          ...(t === 'rewrite' ? {} : { frames_stamped: Math.round(median(xs.map((s) => s.stamps))) }),
          rounds: xs.length,
          all: xs.map((s) => Math.round(s.mpps * 100) / 100),
        });
      }
      // The paced rate of each sink, ratios per round.
      if (DO_PACED) {
        for (const c of ran) {
          const xs = of(k(c.metric));
          emit(named(c.metric, t).replace(/^mpps\./, 'mpps_paced.'), median(xs.map((s) => s.paced)), {
            ...c.ctx,
            traffic: t,
            method: `the most the receiver took over paced offered rates (golden-section search, ${PACED_TRIALS} trials of ${PACED_TRIAL_MS} ms, and the flood)`,
            x_bare: ratio(k(c.metric), k('mpps.xdp_bare_drop'), (s) => s.paced),
            x_parse: ratio(k(c.metric), k('mpps.xdp_parse_drop'), (s) => s.paced),
            x_hash32: ratio(k(c.metric), k('mpps.xdp_hash32_100k_drop'), (s) => s.paced),
            x_nft: ratio(k(c.metric), k('mpps.nft_100k_drop'), (s) => s.paced),
            ...peers(c.metric, t, (s) => s.paced),
            over_flood: Math.round(median(xs.map((s) => s.paced / s.mpps)) * 100) / 100,
            // At the best trial: the receiving NAPI thread's CPU time per packet (and, --prog-stats, the sink's own).
            receiver_ns_per_packet: Math.round(median(xs.map((s) => s.pacedCpuNs))),
            // The share of CPU1 the NAPI thread used at that rate: below 1, the generator, not the sink, set it.
            receiver_busy: Math.round(median(xs.map((s) => (s.paced * s.pacedCpuNs) / 1000)) * 100) / 100,
            // The sink's capacity on one CPU against bare's (receiver ns per packet at the best trials, per round).
            capacity_x_bare: ratio(k(c.metric), k('mpps.xdp_bare_drop'), (s) => s.pacedCpuNs, true),
            ...(PROG_STATS && c.xdp ? { in_program_ns: Math.round(median(xs.map((s) => s.pacedProgNs))) } : {}),
            rounds: xs.length,
            all: xs.map((s) => Math.round(s.paced * 100) / 100),
          });
        }
      }
      // The same windows by the receiver's CPU time per packet: what one CPU that only ran
      // the receive path would drop (independent of how much of CPU1 the other tenants took).
      for (const c of ran) {
        const xs = of(k(c.metric));
        const ns = median(xs.map((s) => s.cpuNs));
        emit(named(c.metric, t).replace(/^mpps\./, 'mpps_cpu.'), 1000 / ns, {
          ...c.ctx,
          traffic: t,
          receiver_ns_per_packet: Math.round(ns),
          x_bare: ratio(k(c.metric), k('mpps.xdp_bare_drop'), (s) => s.cpuNs, true),
          x_parse: ratio(k(c.metric), k('mpps.xdp_parse_drop'), (s) => s.cpuNs, true),
          x_hash32: ratio(k(c.metric), k('mpps.xdp_hash32_100k_drop'), (s) => s.cpuNs, true),
          x_nft: ratio(k(c.metric), k('mpps.nft_100k_drop'), (s) => s.cpuNs, true),
          ...peers(c.metric, t, (s) => s.cpuNs, true),
          ...(PROG_STATS && c.xdp ? { in_program_ns: Math.round(median(xs.map((s) => s.progNs))) } : {}),
          rounds: xs.length,
          all_ns: xs.map((s) => Math.round(s.cpuNs)),
        });
      }
      // How closely this traffic reproduces the published anchors (the issue's x bare figures for the
      // same kinds of sink): the mean distance of our ratios from theirs, and fleetwall beside them.
      const rate = (s: Sample) => (DO_PACED ? s.paced : s.mpps);
      const pairs = Object.entries(ANCHORS)
        .filter(([m]) => samples.has(k(m)))
        .map(([m, a]) => ({ sink: m, measured: ratio(k(m), k('mpps.xdp_bare_drop'), rate), anchor: a }));
      if (pairs.length && samples.has(k('mpps.fleetwall_100k_drop'))) {
        emit(`anchor_fit.${t}`, Math.round((pairs.reduce((x, p) => x + Math.abs(p.measured - p.anchor), 0) / pairs.length) * 1000) / 1000, {
          traffic: t,
          unit: 'mean |measured - anchor| of x bare (0 = this traffic reproduces the published figures)',
          rate: DO_PACED ? 'paced' : 'flooded',
          pairs,
          fleetwall_100k_x_bare: ratio(k('mpps.fleetwall_100k_drop'), k('mpps.xdp_bare_drop'), rate),
        });
      }
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(
      children.map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r)))),
    );
    try {
      bed.execSync('b', ['nft', 'delete', 'table', 'netdev', 'fwbench']);
    } catch {
      /* namespace goes anyway */
    }
    if (useXdpFilter) {
      // An interrupted case leaves xdp-filter loaded: unload it (its pins go with it), or remove the pins.
      try {
        xdpFilter(bed, ['unload', '--all']);
      } catch {
        /* not loaded */
      }
      rmSync(XDP_FILTER_PINS, { recursive: true, force: true });
      if (!libxdpDirBefore) {
        try {
          rmdirSync('/sys/fs/bpf/xdp'); // libxdp's dispatcher pins, empty once unloaded
        } catch {
          /* not empty: another libxdp user's */
        }
      }
    }
    bed.destroy();
    rmSync(nftFile, { force: true });
    execFileSync('taskset', ['-a', '-pc', `0-${possibleCpus() - 1}`, String(process.pid)], { stdio: 'ignore' });
    if (qosFd >= 0) closeSync(qosFd);
    if (PROG_STATS) writeFileSync(statsSysctl, statsBefore);
  }
}

async function main(): Promise<void> {
  emit('bench.context', 0, {
    cpus: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()),
    kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    loadavg: load(),
    rounds: ROUNDS,
  });
  try {
    if (DO_PPS) {
      await perPacket();
      await loadTime();
    }
    if (DO_MPPS) await dropRates();
  } finally {
    for (const o of objects.splice(0)) o.close();
    for (const dp of datapaths.splice(0)) dp.close();
    for (const d of pinDirs.splice(0)) removePins(d);
  }
  emit('bench.done', 0, { loadavg: load() });
}

runBench('bench:dataplane', main);
