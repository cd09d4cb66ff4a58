// npm run bench:dataplane [-- --rounds N] [-- --no-mpps] [-- --no-pps]
//
// Prints one JSON object per line: {"metric": ..., "value": ..., ...context}.
//
// 1. ns_per_packet.*: BPF_PROG_TEST_RUN of the XDP ingress program, compiled
//    with a bench-only prologue that rewrites the source address on every
//    run from a cycle of 1024 distinct addresses (bpf/bench/vary.h), so the
//    figure is over varied sources, not one hot packet. The baseline is the
//    bare count-and-pass program with the same prologue; baseline_hot is the
//    bare program alone. Sets are mixed /32 + /24 (IPv6: /128 + /48). Each
//    case runs with the production layout (hash per hot length + trie, K=6)
//    and, for comparison, as a plain LPM trie (K=0, suffix _trie).
// 2. seconds.load_1m_prefixes: Datapath.apply() of 1,000,000 entry.upsert ops
//    into a fresh table (batch), median of 3.
// 3. mpps.*: drop rate into a veth peer. A live-frames generator (one long
//    BPF_PROG_TEST_RUN, XDP_TX) on CPU0 in namespace a sends 64-byte IPv4/UDP
//    frames from 4096 sources inside the 100k set; the receiving veth in
//    namespace b has threaded NAPI pinned to CPU1 and drops them with: a bare
//    XDP drop program, fleetwall (100k prefixes), fleetwall as a plain trie,
//    or nftables (netdev ingress, interval set of the same 100k prefixes).
//    Counted at the receiver (ethtool rx_queue_0_xdp_packets). Cases are
//    interleaved in every round; medians and ratios are reported.

import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type BpfDatapath, openDatapath, removePins } from '../node-agent/src/datapath/bpf-datapath.js';
import { type LoadedObject, loadObject } from '../node-agent/src/datapath/bpf-object.js';
import type { MapOp } from '../node-agent/src/datapath/datapath.js';
import { check, closeFd, raw } from '../node-agent/src/datapath/libbpf.js';
import { progTestRun } from '../node-agent/src/datapath/test-run.js';
import { createNetnsPair, type NetnsPair } from '../test/support/netns.js';
import { dotted, entries, hitSources, missSources, v4Prefix } from './lib/prefix-sets.js';

const root = resolve(import.meta.dirname, '..');
const argv = process.argv.slice(2);
const ROUNDS = Number(argv[argv.indexOf('--rounds') + 1] ?? 0) || 7;
const DO_PPS = !argv.includes('--no-pps');
const DO_MPPS = !argv.includes('--no-mpps');
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

function openSet(name: string, family: 4 | 6, n: number, k: number): { dp: BpfDatapath; pinDir: string; seconds: number } {
  const pinDir = newPinDir(name);
  const dp = openDatapath({ pinDir, capacity: { prefixesPerTable: Math.max(n, 1024) + 1024, counterSlots: 1024 }, maxHashLengths: k });
  datapaths.push(dp);
  const ops: MapOp[] = entries(family, n).map((entry) => ({ kind: 'entry.upsert', entry }));
  const t0 = process.hrtime.bigint();
  dp.apply(ops);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { dp, pinDir, seconds };
}

/** A bench variant of a program with its source-rotation table filled. */
function variant(objFile: string, prog: string, sources: Uint8Array[], pinDir?: string): number {
  const obj = loadObject(join(root, 'bpf/bench/obj', objFile), pinDir ? { pinDir, pinFilter: (m) => m.startsWith('fw_') } : {});
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

function perPacket(): void {
  const NSRC = 1024;
  const REPEAT = 1_000_000;
  const v4 = frame(4);
  const v6 = frame(6);
  const runs: Array<{ metric: string; fd: number; frame: Buffer; ctx: Record<string, unknown> }> = [];
  runs.push({ metric: 'ns_per_packet.baseline', fd: variant('bare_vary.bpf.o', 'bare_pass', hitSources(4, 1000, NSRC)), frame: v4, ctx: { program: 'bare count-and-pass + source rotation' } });
  const bare = loadObject(join(root, 'bpf/bench/obj/bare.bpf.o'));
  objects.push(bare);
  runs.push({ metric: 'ns_per_packet.baseline_hot', fd: bare.progFd('bare_pass'), frame: v4, ctx: { program: 'bare count-and-pass, one hot packet' } });

  const sets: Array<{ name: string; family: 4 | 6; n: number; miss: boolean }> = [
    { name: 'v4_1k', family: 4, n: 1000, miss: false },
    { name: 'v4_100k', family: 4, n: 100_000, miss: false },
    { name: 'v4_1m', family: 4, n: 1_000_000, miss: true },
    { name: 'v6_100k', family: 6, n: 100_000, miss: false },
  ];
  for (const s of sets) {
    for (const k of [6, 0]) {
      const suffix = k === 0 ? '_trie' : '';
      const { pinDir, seconds } = openSet(`${s.name}${suffix}`, s.family, s.n, k);
      process.stderr.write(`# loaded ${s.name}${suffix} (${s.n}) in ${seconds.toFixed(2)} s\n`);
      const ctx = { prefixes: s.n, layout: k === 0 ? 'lpm trie' : `hash (K=${k}) + trie`, sources: NSRC };
      runs.push({ metric: `ns_per_packet.${s.name}_hit${suffix}`, fd: variant('xdp_ingress_vary.bpf.o', 'fw_xdp_ingress', hitSources(s.family, s.n, NSRC), pinDir), frame: s.family === 4 ? v4 : v6, ctx });
      if (s.miss) {
        runs.push({ metric: `ns_per_packet.${s.name}_miss${suffix}`, fd: variant('xdp_ingress_vary.bpf.o', 'fw_xdp_ingress', missSources(NSRC), pinDir), frame: v4, ctx });
      }
    }
  }
  const results = new Map<string, number[]>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const run of runs) {
      const res = progTestRun(run.fd, run.frame, { repeat: REPEAT });
      results.set(run.metric, [...(results.get(run.metric) ?? []), res.durationNs]);
    }
  }
  const base = median(results.get('ns_per_packet.baseline')!);
  for (const run of runs) {
    const xs = results.get(run.metric)!;
    const m = median(xs);
    emit(run.metric, m, { ...run.ctx, x_baseline: Math.round((m / base) * 100) / 100, rounds: xs.length, min: Math.min(...xs), max: Math.max(...xs) });
  }
  // Release the big sets before the next phase.
  for (const o of objects.splice(0)) o.close();
  for (const dp of datapaths.splice(0)) dp.close();
  for (const d of pinDirs.splice(0)) removePins(d);
}

function loadTime(): void {
  const xs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const { dp, pinDir, seconds } = openSet(`load${i}`, 4, 1_000_000, 6);
    xs.push(seconds);
    dp.close();
    datapaths.splice(datapaths.indexOf(dp), 1);
    removePins(pinDir);
    pinDirs.splice(pinDirs.indexOf(pinDir), 1);
  }
  emit('seconds.load_1m_prefixes', median(xs), { runs: xs.map((x) => Math.round(x * 1000) / 1000), prefixes: 1_000_000, shape: '500k /32 + 500k /24, one apply() call, BPF_F_NO_PREALLOC hash' });
}

// ---------------------------------------------------------------- drop rate on veth

function sh(bed: NetnsPair, side: 'a' | 'b', cmd: string): string {
  const r = bed.execSync(side, ['sh', '-c', cmd]);
  if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return r.stdout;
}

function ethtoolStat(bed: NetnsPair, side: 'a' | 'b', ifname: string, field: string): number {
  const out = sh(bed, side, `ethtool -S ${ifname}`);
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(out);
  return m ? Number(m[1]) : 0;
}

function pinNapi(bed: NetnsPair): void {
  const ps = execFileSync('ps', ['-eo', 'pid,comm'], { encoding: 'utf8' });
  const want = `napi/${bed.b.ifname}`.slice(0, 15);
  for (const line of ps.split('\n')) {
    const [pid, comm] = line.trim().split(/\s+/);
    if (pid && comm?.startsWith(want)) execFileSync('taskset', ['-pc', '1', pid], { stdio: 'ignore' });
  }
}

async function runNode(bed: NetnsPair, side: 'a' | 'b', script: string, args: string[], cpu?: number) {
  const pre = cpu === undefined ? [] : ['taskset', '-c', String(cpu)];
  return bed.spawn(side, [...pre, process.execPath, '--import', 'tsx', join(root, script), ...args], { cwd: root });
}

async function waitExit(child: import('node:child_process').ChildProcess): Promise<string> {
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`helper exited ${code}: ${err}`);
  return out;
}

async function measure(bed: NetnsPair, genArgs: string): Promise<{ mpps: number; offered: number }> {
  const gen = await runNode(bed, 'a', 'bench/lib/xdp-gen.ts', [genArgs], 0);
  try {
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      gen.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        if (buf.includes('ready')) resolve();
      });
      gen.once('exit', (c) => reject(new Error(`generator exited ${c}`)));
    });
    pinNapi(bed);
    await new Promise((r) => setTimeout(r, 400));
    const t0 = process.hrtime.bigint();
    const rx0 = ethtoolStat(bed, 'b', bed.b.ifname, 'rx_queue_0_xdp_packets');
    const tx0 = ethtoolStat(bed, 'a', bed.a.ifname, 'tx_queue_0_xdp_xmit') + ethtoolStat(bed, 'a', bed.a.ifname, 'tx_queue_0_xdp_xmit_errors');
    await new Promise((r) => setTimeout(r, 1000));
    const rx1 = ethtoolStat(bed, 'b', bed.b.ifname, 'rx_queue_0_xdp_packets');
    const tx1 = ethtoolStat(bed, 'a', bed.a.ifname, 'tx_queue_0_xdp_xmit') + ethtoolStat(bed, 'a', bed.a.ifname, 'tx_queue_0_xdp_xmit_errors');
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    return { mpps: (rx1 - rx0) / secs / 1e6, offered: (tx1 - tx0) / secs / 1e6 };
  } finally {
    gen.kill('SIGKILL');
    await new Promise((r) => (gen.exitCode !== null || gen.signalCode !== null ? r(null) : gen.once('exit', r)));
  }
}

async function dropRates(): Promise<void> {
  const N = 100_000;
  const bed = createNetnsPair({ tag: 'bench' });
  const nftFile = join(tmpdir(), `fw-bench-nft-${tag}.nft`);
  try {
    const ifb = bed.b.ifname;
    sh(bed, 'b', `ethtool -K ${ifb} gro on && echo 1 > /sys/class/net/${ifb}/threaded`);

    // The four sinks.
    const fw = openSet('drop-fw', 4, N, 6);
    const small = openSet('drop-fw1k', 4, 1000, 6);
    const smallGen = JSON.stringify({ ifname: bed.a.ifname, srcMac: bed.a.mac, dstMac: bed.b.mac, dst: bed.b.v4, sources: hitSources(4, 1000, 4096).map((a) => Buffer.from(a).toString('hex')) });
    const trie = openSet('drop-trie', 4, N, 0);
    const barePin = newPinDir('drop-bare');
    execFileSync('mkdir', ['-p', barePin]);
    const bare = loadObject(join(root, 'bpf/bench/obj/bare.bpf.o'));
    objects.push(bare);
    check(raw.bpf_obj_pin(bare.progFd('bare_drop'), `${barePin}/prog`) as number, 'pin', barePin);
    check(raw.bpf_obj_pin(bare.progFd('bare_parse_drop'), `${barePin}/parse`) as number, 'pin', barePin);
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
    process.stderr.write(`# nft set of ${N} loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);

    const sources = hitSources(4, N, 4096).map((a) => Buffer.from(a).toString('hex'));
    const genArgs = JSON.stringify({ ifname: bed.a.ifname, srcMac: bed.a.mac, dstMac: bed.b.mac, dst: bed.b.v4, sources });

    type Case = { metric: string; attach: () => Promise<void>; detach: () => void; ctx: Record<string, unknown>; gen?: string };
    const linkPin = `${barePin}/link`;
    const cases: Case[] = [
      {
        metric: 'mpps.xdp_bare_drop',
        attach: async () => void (await waitExit(await runNode(bed, 'b', 'bench/lib/attach-helper.ts', ['prog', `${barePin}/prog`, ifb, linkPin]))),
        detach: () => {
          const fd = raw.bpf_obj_get(linkPin) as number;
          raw.bpf_link_detach(fd);
          closeFd(fd);
          unlinkSync(linkPin);
        },
        ctx: { sink: 'bare XDP count-and-drop' },
      },
      {
        metric: 'mpps.xdp_parse_drop',
        attach: async () => void (await waitExit(await runNode(bed, 'b', 'bench/lib/attach-helper.ts', ['prog', `${barePin}/parse`, ifb, linkPin]))),
        detach: () => {
          const fd = raw.bpf_obj_get(linkPin) as number;
          raw.bpf_link_detach(fd);
          closeFd(fd);
          unlinkSync(linkPin);
        },
        ctx: { sink: 'bare XDP that reads the IPv4 source, then drops (no lookup)' },
      },
      {
        metric: 'mpps.fleetwall_100k_drop',
        attach: async () => void (await waitExit(await runNode(bed, 'b', 'bench/lib/attach-helper.ts', ['fleetwall', fw.pinDir, ifb]))),
        detach: () => fw.dp.detach(ifb),
        ctx: { sink: 'fleetwall XDP, 50k /32 + 50k /24, hash (K=6) + trie' },
      },
      {
        metric: 'mpps.fleetwall_1k_drop',
        attach: async () => void (await waitExit(await runNode(bed, 'b', 'bench/lib/attach-helper.ts', ['fleetwall', small.pinDir, ifb]))),
        detach: () => small.dp.detach(ifb),
        ctx: { sink: 'fleetwall XDP, 500 /32 + 500 /24 (traffic from that set)' },
        gen: smallGen,
      },
      {
        metric: 'mpps.fleetwall_100k_trie_drop',
        attach: async () => void (await waitExit(await runNode(bed, 'b', 'bench/lib/attach-helper.ts', ['fleetwall', trie.pinDir, ifb]))),
        detach: () => trie.dp.detach(ifb),
        ctx: { sink: 'fleetwall XDP as a plain LPM trie (K=0), same 100k' },
      },
      {
        metric: 'mpps.nft_100k_drop',
        attach: async () => {},
        detach: () => {},
        ctx: { sink: 'nftables netdev ingress, interval set of the same 100k' },
      },
    ];
    const results = new Map<string, number[]>();
    const offered = new Map<string, number[]>();
    for (let r = 0; r < ROUNDS; r++) {
      for (const c of cases) {
        await c.attach();
        try {
          const m = await measure(bed, c.gen ?? genArgs);
          results.set(c.metric, [...(results.get(c.metric) ?? []), m.mpps]);
          offered.set(c.metric, [...(offered.get(c.metric) ?? []), m.offered]);
          process.stderr.write(`# round ${r + 1} ${c.metric}: ${m.mpps.toFixed(2)} Mpps (offered ${m.offered.toFixed(2)})\n`);
        } finally {
          c.detach();
        }
      }
    }
    const bareM = median(results.get('mpps.xdp_bare_drop')!);
    const nftM = median(results.get('mpps.nft_100k_drop')!);
    for (const c of cases) {
      const xs = results.get(c.metric)!;
      const m = median(xs);
      emit(c.metric, m, {
        ...c.ctx,
        x_bare: Math.round((m / bareM) * 100) / 100,
        x_nft: Math.round((m / nftM) * 100) / 100,
        offered_mpps: Math.round(median(offered.get(c.metric)!) * 100) / 100,
        rounds: xs.length,
        all: xs.map((x) => Math.round(x * 100) / 100),
      });
    }
  } finally {
    try {
      bed.execSync('b', ['nft', 'delete', 'table', 'netdev', 'fwbench']);
    } catch {
      /* namespace goes anyway */
    }
    bed.destroy();
    rmSync(nftFile, { force: true });
  }
}

async function main(): Promise<void> {
  emit('bench.context', 0, { cpus: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()), kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(), loadavg: load(), rounds: ROUNDS });
  try {
    if (DO_PPS) {
      perPacket();
      loadTime();
    }
    if (DO_MPPS) await dropRates();
  } finally {
    for (const o of objects.splice(0)) o.close();
    for (const dp of datapaths.splice(0)) dp.close();
    for (const d of pinDirs.splice(0)) removePins(d);
  }
  emit('bench.done', 0, { loadavg: load() });
}

await main();
