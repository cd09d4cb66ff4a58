// npm run bench:memory [-- --quick]
//
// The kernel memory of fleetwall's maps (their memlock, as `bpftool map show`
// reports it: Datapath.memory() reads /proc/self/fdinfo of each map), one
// JSON object per line ({"metric", "value", ...context}):
//
//   mb.kernel_idle          a fresh datapath, no rules (MB = 2^20 bytes)
//   mb.kernel_10k           10,000 IPv4 rules (half /32, half /24), each with its journal entry and counter slot
//   mb.kernel_1m            1,000,000 such rules (the dataplane bench's 1M set) (--quick: mb.kernel_100k)
//   mb.kernel_percpu_idle   the part multiplied by the CPU count, per CPU, with no rules
//   ms.grow_swap_p99        the longest swaps of a generation of maps (p99 of every swap), growing from no
//                           rules to the 1M set in chunks of 16,384 rules (as an agent applies a snapshot) and
//                           shrinking back, with traffic through the maps the whole time
//   packets.wrong_during_grow  packets decided wrongly meanwhile: a blocked source's packet that arrived, an
//                           allowed or unlisted one that did not, a packet the rule counters missed or counted twice
//
// The traffic: UDP from four IPv4 sources in one network namespace to another
// (a veth pair), fleetwall attached to the receiving end: one blocked by a
// /32, one by a /30, one allowed inside the /30, one unlisted. SIGINT,
// SIGTERM or SIGHUP: pins, namespaces and children are cleaned up, then it
// ends by that signal (lib/interrupt.ts).

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseAddress } from '../common/src/cidr.js';
import { type BpfDatapath, openDatapath, removePins, uninstallPins } from '../node-agent/src/datapath/bpf-datapath.js';
import { ATTR_ALLOW, OpBatch } from '../node-agent/src/datapath/datapath.js';
import { createNetnsPair, type NetnsPair } from '../test/support/netns.js';
import { StreamTraffic } from '../test/support/stream-traffic.js';
import { checkpoint, runBench, sleep } from './lib/interrupt.js';
import { v4Prefix } from './lib/prefix-sets.js';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const BIG = QUICK ? 100_000 : 1_000_000;
const BIG_NAME = QUICK ? '100k' : '1m';
const MB = 1 << 20;
/** Rules per applyBatch() (the agent's chunk). */
const CHUNK = 16_384;
const root = join(import.meta.dirname, '..');
const pinDirs: string[] = [];
const datapaths: BpfDatapath[] = [];

function emit(metric: string, value: number, ctx: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ metric, value: Math.round(value * 1000) / 1000, ...ctx })}\n`);
}

function newPinDir(name: string): string {
  const d = `/sys/fs/bpf/fleetwall-bench-memory-${name}-${process.pid}-${randomBytes(2).toString('hex')}`;
  pinDirs.push(d);
  return d;
}

function open(name: string): BpfDatapath {
  const dp = openDatapath({ pinDir: newPinDir(name), capacity: { prefixesPerTable: 1_048_576, counterSlots: 1_048_576 } });
  datapaths.push(dp);
  return dp;
}

/**
 * Rules [from, to) of the n-rule set (v4Prefix: first half /32, second half
 * /24), ingress, each with journal entry id first + i and counter slot
 * first + i, in chunks; or their deletes. `after` runs after each chunk.
 */
async function rules(dp: BpfDatapath, n: number, first: number, del: boolean, after?: () => void): Promise<void> {
  const b = new OpBatch(2 * CHUNK);
  for (let i0 = 0; i0 < n; i0 += CHUNK) {
    await checkpoint();
    b.clear();
    const i1 = Math.min(n, i0 + CHUNK);
    for (let i = i0; i < i1; i++) {
      const p = v4Prefix(i, n);
      if (del) b.journalDelete(BigInt(first + i), first + i);
      else b.journalUpsert(BigInt(first + i), 0, p.bytes, 0, p.len, 0, first + i, 0);
    }
    for (let i = i0; i < i1; i++) {
      const p = v4Prefix(i, n);
      if (del) b.entryDelete(0, p.bytes, 0, p.len);
      else b.entryUpsert(0, p.bytes, 0, p.len, 0, first + i);
    }
    await dp.applyBatch(b);
    await dp.settled(); // a swap the apply made due goes on after it resolves: counted once landed
    after?.();
  }
}

/** mb.kernel_idle, mb.kernel_percpu_idle, mb.kernel_10k, mb.kernel_1m. */
async function sizes(): Promise<void> {
  const cpus = Number(execFileSync('nproc', ['--all'], { encoding: 'utf8' }).trim());
  const idle = open('idle').memory();
  emit('mb.kernel_idle', idle.bytes / MB, { bytes: idle.bytes, target: 16, abi5: 298, maps: idle.maps.length });
  emit('mb.kernel_percpu_idle', idle.perCpuBytes / MB, { bytes: idle.perCpuBytes, target: 1, cpus });
  for (const n of [10_000, BIG]) {
    const dp = open(`n${n}`);
    const t0 = performance.now();
    await rules(dp, n, 8, false);
    const s = (performance.now() - t0) / 1000;
    const m = dp.memory();
    const name = n === 10_000 ? '10k' : BIG_NAME;
    emit(`mb.kernel_${name}`, m.bytes / MB, {
      bytes: m.bytes,
      target: n === 10_000 ? 24 : n === 1_000_000 ? 160 : undefined,
      rules: n,
      shape: 'IPv4, half /32 half /24, each with a journal entry and a counter slot',
      bytes_per_rule: Math.round((m.bytes - idle.bytes) / n),
      table_mb: Math.round((m.tables[0]!.bytes / MB) * 10) / 10,
      counters_mb: Math.round((m.counterBytes / MB) * 10) / 10,
      journal_mb: Math.round((m.journalBytes / MB) * 10) / 10,
      index_blocks: m.tables[0]!.blocksInUse,
      swaps: m.swaps,
      load_seconds: Math.round(s * 100) / 100,
    });
    dp.close();
    datapaths.splice(datapaths.indexOf(dp), 1);
    removePins(dp.pinDir);
  }
}

/** ms.grow_swap_p99 and packets.wrong_during_grow: the set loaded and unloaded under traffic. */
async function growUnderTraffic(): Promise<void> {
  let bed: NetnsPair | undefined;
  let streams: StreamTraffic | undefined;
  try {
    bed = createNetnsPair({ tag: 'bmem' });
    const dp = open('grow');
    const [A4, W4, U4, B4] = bed.a.v4Extra as [string, string, string, string]; // .2 .3 .4 .5
    // The static rules: A4 (and W4) in a denied /30 (slot 1), W4 allowed (slot 3), B4 denied (slot 2).
    const st = new OpBatch(8);
    for (const [a, len, allow, slot] of [
      ['192.0.2.0', 30, false, 1],
      [B4, 32, false, 2],
      [W4, 32, true, 3],
    ] as const) {
      st.journalUpsert(BigInt(slot), 0, parseAddress(a).bytes, 0, len, allow ? ATTR_ALLOW : 0, slot, 0);
      st.entryUpsert(0, parseAddress(a).bytes, 0, len, allow ? ATTR_ALLOW : 0, slot);
    }
    await dp.applyBatch(st);
    const [cmd, ...pre] = bed.nsenter('b');
    execFileSync(cmd!, [...pre, process.execPath, '--import', 'tsx', 'bench/lib/attach-helper.ts', 'fleetwall', dp.pinDir, bed.b.ifname], {
      cwd: root,
      encoding: 'utf8',
    });
    streams = await StreamTraffic.start(bed, [A4, W4, U4, B4], bed.b.v4, 1);
    await sleep(300);
    const swaps: number[] = [];
    let seen = 0;
    const note = () => {
      const m = dp.memory();
      if (m.swaps > seen) {
        seen = m.swaps;
        swaps.push(dp.lastSwapMs);
      }
    };
    const t0 = performance.now();
    await rules(dp, BIG, 100, false, note);
    const grown = swaps.length;
    const peak = dp.memory().bytes;
    await sleep(200);
    await rules(dp, BIG, 100, true, note);
    const seconds = (performance.now() - t0) / 1000;
    await sleep(300);
    const r = await streams.stop();
    streams = undefined;
    const packets = new BigUint64Array(4);
    const bytes = new BigUint64Array(4);
    dp.readRuleCountersInto(0, packets, bytes);
    // Wrong: a blocked packet that arrived, an allowed or unlisted one that did not, a counter off by any packet.
    const sent = (s: string) => r.sent[s] ?? 0;
    const got = (s: string) => r.received[s] ?? 0;
    const wrong =
      got(A4) +
      got(B4) +
      (sent(W4) - got(W4)) +
      (sent(U4) - got(U4)) +
      Math.abs(Number(packets[1]!) - sent(A4)) +
      Math.abs(Number(packets[2]!) - sent(B4)) +
      Math.abs(Number(packets[3]!) - sent(W4));
    const sorted = [...swaps].sort((x, y) => x - y);
    const p99 = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)] ?? 0;
    emit('ms.grow_swap_p99', p99, {
      swaps: swaps.length,
      growing: grown,
      shrinking: swaps.length - grown,
      median_ms: Math.round(sorted[sorted.length >> 1] ?? 0),
      max_ms: Math.round(sorted.at(-1) ?? 0),
      rules: BIG,
      chunk: CHUNK,
      peak_mb: Math.round((peak / MB) * 10) / 10,
      seconds: Math.round(seconds * 10) / 10,
    });
    emit('packets.wrong_during_grow', wrong, {
      target: 0,
      sent: Object.values(r.sent).reduce((x, y) => x + y, 0),
      blocked_arrived: got(A4) + got(B4),
      allowed_lost: sent(W4) - got(W4),
      unlisted_lost: sent(U4) - got(U4),
      counted: [packets[1], packets[2], packets[3]].map(String),
    });
  } finally {
    streams?.kill();
    bed?.destroy();
  }
}

async function main(): Promise<void> {
  emit('bench.context', 0, {
    cpus: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()),
    kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
    loadavg: execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).trim(),
    quick: QUICK,
  });
  try {
    await sizes();
    await growUnderTraffic();
  } finally {
    for (const dp of datapaths.splice(0)) dp.close();
    for (const d of pinDirs.splice(0)) {
      uninstallPins(d);
      removePins(d);
    }
  }
  emit('bench.done', 0);
}

runBench('bench:memory', main);
