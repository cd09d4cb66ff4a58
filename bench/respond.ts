// bench:respond (issue 18): detection policies, JSON lines on stdout.
//
//   ns_per_packet.baseline / policy_nomatch / policy_other_direction / policy_match
//       BPF_PROG_TEST_RUN of the production XDP program (one hot UDP frame,
//       no rules; sampled drop events off, so fw_xdp_noev, as such a node runs it): without policies; with a policy its packets do not match
//       (TCP/22: the program's protocol test, fw_policy_wants, stops them);
//       with an egress-only policy (the same one test); with a policy that
//       counts them (one group, never over its limit); ratios x_baseline
//       beside them. Medians of 9 interleaved rounds; the kernel's figure is
//       whole ns (a 1 ns step is 0.11x at a 9 ns baseline), so each line also
//       carries wall_ns (the wall clock around the syscall / repeat:
//       fractional, but it counts any preemption too) and x_baseline_wall. policy_match_lru: the same on the LRU build
//       (bpf/bench/pol_lru.h) on the same maps.
//   ns_per_packet.spoofed_flood, count.false_reports_spoofed_flood,
//   count.heavy_found_spoofed_flood, mb.kernel_policy_counting: the kernel's
//       count-min sketch under --flood-sources random sources (1,000,000;
//       50,000 with --tiny) in one window, with 1,000 sources at the limit
//       and 100 each at 2/5/10x (respond/flood-compare.ts): the runs' mean
//       duration (ns_over_none: over the same flood without policies),
//       reports of sources never over the limit, heavy hitters found, the
//       sketch's memlock; the LRU build's figures (and the sketch's with the
//       textbook margin e N / w) beside them.
//   ms.detect_to_local_drop_p50 / _p99: from the packet that takes a source
//       over the threshold to its first XDP_DROP on that node (the kernel's
//       hit, the responder's poll, the local ban's apply).
//   ms.detect_to_fleet_drop_p99: from the same packet to its first XDP_DROP
//       on the other node (Detection over Sync, the ban's transaction, the
//       Delta, that node's apply).
//   bans_per_second.spoofed_flood, mb.agent_rss_spoofed_flood: random
//       sources each sent over the threshold (--sources, 1,000,000 by
//       default; every one a would-be ban), against the policy's cap of
//       --max-bans 50/s: fleet-wide bans made per second while it pours in,
//       and this process's RSS (both nodes and the control plane live here:
//       an upper bound for one agent).
//   ms.operator_create_p99_under_attack: CreateRule latency meanwhile (the
//       control plane in its own process, as deployed).
//
// Flags: --tiny (a few hundred sources, a handful of samples: a smoke run),
// --sources N, --samples N, --max-bans N, --in-process (the control plane in
// the bench's process instead of its own), --kernel-only (the per-packet and
// kernel flood figures alone: no control plane, no agents), --flood-sources N. Run as root (BPF). BENCH_TRACE=1:
// each CreateRule's latency and the bans gauge on stderr; BENCH_PROFILE=file:
// a CPU profile of the flood phase (this process).
//   ms.event_loop_delay_p99_under_attack: this process's event loop (the
//       nodes'; and the control plane's with --in-process) during the flood.
import {
  connectClients,
  startChildControlPlane,
  startTestControlPlane,
  type TestClients,
  unaryCall,
} from '../test/support/control-plane.js';
import { startTestPostgres } from '../test/support/postgres.js';
import { detectionPolicy, kernelPolicy } from '../test/support/policy-fixtures.js';
import { ipFrame, l4Frame } from '../test/support/frames.js';
import { XDP_DROP } from '../node-agent/src/datapath/libbpf.js';
import type { KernelPolicy } from '../node-agent/src/datapath/policy-maps.js';
import { BanScope, PolicyProtocol, SourceGrouping } from '../proto/gen/fleetwall/v1/policy.js';
import { Direction, Mode } from '../proto/gen/fleetwall/v1/rule.js';
import { EVENTS_OFF } from './lib/events-off.js';
import { type BenchNode, startNode } from './respond/node.js';
import { AT_LIMIT, type FloodFigures, floodCompare, HEAVY, HEAVY_TIMES, loadLruVariant } from './respond/flood-compare.js';
import { type BpfDatapath, openDatapath, removePins } from '../node-agent/src/datapath/bpf-datapath.js';
import { progTestRun } from '../node-agent/src/datapath/test-run.js';
import { spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROG } from '../node-agent/src/datapath/abi.js';

const argv = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const TINY = argv.includes('--tiny');
const IN_PROCESS = argv.includes('--in-process');
const SOURCES = flag('sources', TINY ? 300 : 1_000_000);
const SAMPLES = flag('samples', TINY ? 5 : 100);
const MAX_BANS = flag('max-bans', 50);
const KERNEL_ONLY = argv.includes('--kernel-only');
const REPEAT = TINY ? 20_000 : 1_000_000;
const FLOOD_SOURCES = flag('flood-sources', TINY ? 50_000 : 1_000_000);
const LIMIT = 20; // packets per 1 s window

function emit(metric: string, value: number, ctx: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ metric, value: Math.round(value * 1000) / 1000, ...ctx })}\n`);
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function perPacket(dp: BpfDatapath): void {
  const f = ipFrame('198.51.100.1', '192.0.2.1'); // UDP to port 9
  const lru = loadLruVariant(dp);
  // Each run: the kernel's figure (whole ns: total / repeat, truncated) and the wall clock around the
  // syscall / repeat (fractional; it also counts any preemption, so it is read only beside the kernel's).
  const wallOf = new Map<string, number[]>();
  const timed = (run: () => number) => (): [number, number] => {
    const t0 = process.hrtime.bigint();
    const ns = run();
    return [ns, Number(process.hrtime.bigint() - t0) / REPEAT];
  };
  const runs: Record<string, () => [number, number]> = {
    sketch: timed(() => dp.testRun('xdp', f, { repeat: REPEAT }).durationNs),
    lru: timed(() => progTestRun(lru.fd, f, { repeat: REPEAT }).durationNs),
  };
  const kp = (p: Partial<KernelPolicy>): KernelPolicy => kernelPolicy({ limitPackets: 1n << 62n, ...p });
  // [metric, policies, build]: the production build (the sketch), and the LRU build on the same maps.
  const cases: [string, KernelPolicy[], string][] = [
    ['baseline', [], 'sketch'],
    ['policy_other_direction', [kp({ direction: 'egress' })], 'sketch'],
    ['policy_nomatch', [kp({ protocol: 'tcp', ports: [[22, 22]] })], 'sketch'],
    ['policy_match', [kp({})], 'sketch'],
    ['policy_match_lru', [kp({})], 'lru'],
  ];
  const by = new Map<string, number[]>();
  try {
    for (let round = 0; round < 9; round++) {
      for (const [name, set, build] of round % 2 ? [...cases].reverse() : cases) {
        dp.policies.writePolicies(set);
        runs[build]!();
        const [ns, wall] = runs[build]!();
        by.set(name, [...(by.get(name) ?? []), ns]);
        wallOf.set(name, [...(wallOf.get(name) ?? []), wall]);
      }
    }
  } finally {
    lru.obj.close();
  }
  dp.policies.writePolicies([]);
  const base = pct(by.get('baseline')!, 50);
  const baseWall = pct(wallOf.get('baseline')!, 50);
  const r2 = (x: number) => Math.round(x * 100) / 100;
  for (const [name] of cases) {
    const v = pct(by.get(name)!, 50);
    const wall = pct(wallOf.get(name)!, 50);
    emit(`ns_per_packet.${name}`, v, {
      ...(name === 'baseline' ? {} : { x_baseline: r2(v / base) }),
      wall_ns: r2(wall),
      ...(name === 'baseline' ? {} : { x_baseline_wall: r2(wall / baseWall) }),
    });
  }
}

/**
 * The spoofed flood through the sketch and through the LRU build
 * (respond/flood-compare.ts): the sketch's figures as the metrics, the
 * LRU's (and the sketch with the textbook margin) beside them.
 */
function spoofedFloodKernel(dp: BpfDatapath): void {
  const [none, sketch, lru, cm] = floodCompare(dp, FLOOD_SOURCES, LIMIT);
  const ctx = (f: FloodFigures) => ({
    ns_per_packet: Math.round(f.nsPerPacket * 10) / 10,
    ns_over_none: Math.round((f.nsPerPacket - none!.nsPerPacket) * 10) / 10,
    reports: f.reports,
    lost: f.lost,
    false_reports: f.falseReports,
    heavy_found: f.heavyFound.join('/'),
    mb_kernel: Math.round((f.kernelBytes / 1e6) * 10) / 10,
    margin_packets: f.marginPackets,
  });
  const flood = {
    sources: FLOOD_SOURCES,
    packets: sketch!.packets,
    limit: LIMIT,
    at_limit: AT_LIMIT,
    heavy: `${HEAVY} each at ${HEAVY_TIMES.join('/')}x`,
  };
  emit('ns_per_packet.spoofed_flood', sketch!.nsPerPacket, {
    ...flood,
    none: ctx(none!).ns_per_packet,
    ns_over_none: ctx(sketch!).ns_over_none,
    lru: ctx(lru!),
  });
  emit('count.false_reports_spoofed_flood', sketch!.falseReports, {
    reports: sketch!.reports,
    lost: sketch!.lost,
    lru: lru!.falseReports,
    sketch_count_min_margin: cm!.falseReports,
  });
  emit(
    'count.heavy_found_spoofed_flood',
    sketch!.heavyFound.reduce((a, b) => a + b, 0),
    {
      sketch: ctx(sketch!).heavy_found,
      lru: ctx(lru!).heavy_found,
      sketch_count_min_margin: ctx(cm!).heavy_found,
      margin_packets: sketch!.marginPackets,
      margin_packets_count_min: cm!.marginPackets,
    },
  );
  emit('mb.kernel_policy_counting', sketch!.kernelBytes / 1e6, { lru: ctx(lru!).mb_kernel });
}

interface BenchControlPlane {
  readonly target: string;
  readonly httpPort: number;
  readonly clients: TestClients;
  stop(): Promise<unknown>;
}

/**
 * The control plane in its own process, as deployed (--in-process: in this
 * one, beside the nodes, whose synchronous work - a map resize loads BPF
 * programs for a second or more - then stalls the control plane's requests
 * too). The production pool size (tests use 5).
 */
async function startControlPlane(url: string): Promise<BenchControlPlane> {
  if (IN_PROCESS) return startTestControlPlane(url, { dbPoolSize: 10 });
  const child = await startChildControlPlane(url, { FLEETWALL_DB_POOL_SIZE: '10', FLEETWALL_LOG_LEVEL: 'warn' });
  const clients = connectClients(child.target);
  return {
    target: child.target,
    httpPort: child.httpPort,
    clients,
    async stop() {
      clients.close();
      await child.stop();
    },
  };
}

async function main(): Promise<void> {
  if (KERNEL_ONLY) {
    // The kernel's figures alone: no control plane, no agent.
    const pinDir = `/sys/fs/bpf/fleetwall-bench-respond-k-${process.pid}`;
    const dp = openDatapath({ pinDir, capacity: { prefixesPerTable: 1 << 16, counterSlots: 1 << 16 }, events: EVENTS_OFF });
    try {
      perPacket(dp);
      spoofedFloodKernel(dp);
    } finally {
      dp.uninstall();
      removePins(pinDir);
    }
    return;
  }
  const pg = await startTestPostgres();
  // The production pool size (tests use 5).
  const cp = await startControlPlane(await pg.newDatabase());
  const nodes: BenchNode[] = [];
  try {
    const [n1, n2] = [await startNode('bench-1', cp.target), await startNode('bench-2', cp.target)];
    nodes.push(n1, n2);
    perPacket(n1.dp);
    spoofedFloodKernel(n1.dp);

    await unaryCall(cp.clients.policies, 'createPolicy', {
      policy: detectionPolicy({
        name: 'bench',
        match: {
          direction: Direction.DIRECTION_INGRESS,
          protocol: PolicyProtocol.POLICY_PROTOCOL_UDP,
          ports: [{ first: 9, last: 0 }],
          tcpSynOnly: false,
        },
        threshold: { packetsPerSecond: BigInt(LIMIT), bytesPerSecond: 0n, window: { seconds: 1n, nanos: 0 } },
        grouping: SourceGrouping.SOURCE_GROUPING_ADDRESS,
        response: { duration: { seconds: 600n, nanos: 0 }, escalationFactor: 2, maxDuration: { seconds: 3600n, nanos: 0 }, jitter: 0 },
        scope: BanScope.BAN_SCOPE_FLEET,
        mode: Mode.MODE_ENFORCE,
        maxBansPerSecond: MAX_BANS,
      }),
    });
    while (n1.responder.stats.policies === 0 || n2.responder.stats.policies === 0) await sleep(10);

    // Detection to drop: one source at a time, LIMIT + 1 packets, then until dropped here and there.
    const local: number[] = [];
    const fleet: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const f = l4Frame(`203.0.${113 + (i >> 8)}.${i & 255}`, '192.0.2.1', 'udp', 9);
      for (let k = 0; k <= LIMIT; k++) n1.dp.testRun('xdp', f);
      const t0 = performance.now();
      while (n1.dp.testRun('xdp', f).retval !== XDP_DROP) await sleep(1);
      local.push(performance.now() - t0);
      while (n2.dp.testRun('xdp', f).retval !== XDP_DROP) await sleep(2);
      fleet.push(performance.now() - t0);
      await sleep(1000 / MAX_BANS); // within the policy's ban rate
    }
    emit('ms.detect_to_local_drop_p50', pct(local, 50), { samples: SAMPLES });
    emit('ms.detect_to_local_drop_p99', pct(local, 99), { samples: SAMPLES });
    emit('ms.detect_to_fleet_drop_p99', pct(fleet, 99), { samples: SAMPLES });

    // The spoofed flood: every random source over the threshold, while an operator creates rules.
    // Bans in force (fleetwall_bans_active: ListBans answers 10,000 at most, fewer than a long flood makes).
    const activeBans = async () => {
      const text = await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`).then((r) => r.text());
      return Number(/^fleetwall_bans_active(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
    };
    const bansBefore = await activeBans();
    const creates: number[] = [];
    // The operator in its own process (respond/operator-child.ts): latencies as the control plane answers them.
    const opChild = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'respond/operator-child.ts'), cp.target], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let opOut = '';
    opChild.stdout!.on('data', (d: Buffer) => {
      opOut += d.toString();
    });
    const operator = new Promise<void>((res) => opChild.once('exit', () => res()));
    // Its first create (tsx's start-up) is not under attack yet: wait for it.
    while (!opOut.includes('\n')) await sleep(20);
    opOut = '';
    const t0 = performance.now();
    // This process's event loop (both nodes and the control plane): a stall here delays every request.
    const prof = process.env.BENCH_PROFILE ? new Session() : undefined;
    prof?.connect();
    const post = (m: string, params?: object) =>
      new Promise<unknown>((res, rej) => prof!.post(m, params ?? {}, (e, r) => (e ? rej(e) : res(r))));
    if (prof) {
      await post('Profiler.enable');
      await post('Profiler.start');
    }
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    let rss = 0;
    const sampler = setInterval(() => {
      rss = Math.max(rss, process.memoryUsage().rss);
    }, 100);
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(import.meta.dirname, 'respond/flood-child.ts'),
        join(n1.dp.pinDir, 'progs', PROG.XDP),
        String(SOURCES),
        String(LIMIT),
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((res, rej) =>
      child.once('exit', (code) => (code === 0 ? res() : rej(new Error(`the flood child exited with ${code}`)))),
    );
    clearInterval(sampler);
    const floodS = (performance.now() - t0) / 1000;
    await sleep(1000);
    opChild.stdin!.end();
    await operator;
    for (const line of opOut.split('\n')) if (line.trim() !== '') creates.push(Number(line));
    const bansAfter = await activeBans();
    if (process.env.BENCH_TRACE) process.stderr.write(`bans active before ${bansBefore} after ${bansAfter}\n`);
    const bans = bansAfter - bansBefore;
    const metrics = await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`).then((r) => r.text());
    const metric = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
    const pol = (await unaryCall(cp.clients.policies, 'getPolicy', { name: 'bench' })).policy!;
    emit('count.detections_at_control_plane', metric('fleetwall_detections_total'), {
      deferred_now: metric('fleetwall_bans_deferred'),
      bans: Number(pol.bans),
      exempted: Number(pol.exempted),
    });
    const elapsed = (performance.now() - t0) / 1000;
    emit('bans_per_second.spoofed_flood', bans / elapsed, {
      sources: SOURCES,
      cap: MAX_BANS,
      flood_s: Math.round(floodS * 10) / 10,
    });
    emit('mb.agent_rss_spoofed_flood', Math.max(rss, process.memoryUsage().rss) / 1e6, {
      note: IN_PROCESS ? 'the bench process: two nodes and the control plane' : 'the bench process: two nodes',
    });
    emit('count.local_bans_spoofed_flood', n1.responder.stats.localBans, {
      rate_limited: n1.responder.stats.rateLimited,
      window_packets: String(n1.responder.stats.windowPackets),
      margin_packets: String(n1.responder.stats.marginPackets),
    });
    emit('ms.operator_create_p99_under_attack', pct(creates, 99), { creates: creates.length, p50: Math.round(pct(creates, 50)) });
    loop.disable();
    if (prof) {
      const { profile } = (await post('Profiler.stop')) as { profile: unknown };
      writeFileSync(process.env.BENCH_PROFILE!, JSON.stringify(profile));
    }
    emit('ms.event_loop_delay_p99_under_attack', loop.percentile(99) / 1e6, { max: Math.round(loop.max / 1e6) });
  } finally {
    for (const n of nodes) await n.close().catch(() => undefined);
    await cp.stop();
    await pg.stop();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
