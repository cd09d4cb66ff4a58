// bench:dataplane, drop rates:
//
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
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadObject } from '../../node-agent/src/datapath/bpf-object.js';
import { check, possibleCpus, raw } from '../../node-agent/src/datapath/libbpf.js';
import { createNetnsPair } from '../../test/support/netns.js';
import { checkpoint, sleep } from '../lib/interrupt.js';
import { hitSources } from '../lib/prefix-sets.js';
import { fillHash32, fillTrie, hash32Keys, loadNftSet, sumHits } from './anchors.js';
import { jsonChild, runNode } from './children.js';
import { setTraffic, stamps, writeSources } from './generator.js';
import { ALWAYS, CASES, COMPARE_LIVE, DO_PACED, GEN_BATCH, IDLE_POLL, PROG_STATS, ROUNDS, root, TRAFFIC, TX_SHIFT } from './options.js';
import { pacer } from './paced.js';
import { cpuTimeNs, ethtoolStats, napiThreads, pinNapi, progStats, sh } from './receiver.js';
import { key, reportDropRates, type Sample } from './report.js';
import { newPinDir, noevProgramOf, objects, openSet, pinPathIn, tag } from './sets.js';
import { sinkCases } from './sinks.js';
import { XDP_FILTER_PINS, xdpFilter, xdpFilterUsable } from './xdp-filter.js';

export async function dropRates(): Promise<void> {
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
    const fw = await openSet('drop-fw', 4, N, 6);
    const small = await openSet('drop-fw1k', 4, 1000, 6);
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
    const counts = { xdpFilterDropped: 0n };
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
      const o = loadObject(file, { pinPath: pinPathIn(fw.pinDir) });
      objects.push(o);
      check(raw.bpf_obj_pin(o.progFd(noevProgramOf(file)), `${barePin}/fw_${ab}`) as number, 'pin', barePin);
    }
    process.stderr.write(`# hash32: ${keys.length} exact keys (50k /32s; one address per /24, the generator's where it sends from one)\n`);
    loadNftSet(bed, ifb, nftFile, N);

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

    const cases = sinkCases({ helper, bed, ifb, barePin, fw, small, abPrograms, useXdpFilter, filterKeys, counts });
    const { pacedRate } = pacer(srcPin, genProc.pid!, bed.a.ifname);
    const samples = new Map<string, Sample[]>();
    let current = 'big/rewrite';
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
    if (useXdpFilter) process.stderr.write(`# xdp-filter: ${counts.xdpFilterDropped} packets dropped over its windows (and warm-ups)\n`);
    reportDropRates(samples, ran);
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
