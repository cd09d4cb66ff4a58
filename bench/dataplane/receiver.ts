// Reading the veth pair during the drop-rate phase: commands in a namespace,
// ethtool counters, the receiving veth's NAPI threads (pinned to CPU1) and
// their CPU time, the sending veth's counters through /proc/PID/net/dev, and
// (--prog-stats) the sink programs' own run time.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { NetnsPair } from '../../test/support/netns.js';
import { PROG_STATS } from './options.js';

export function sh(bed: NetnsPair, side: 'a' | 'b', cmd: string): string {
  const r = bed.execSync(side, ['sh', '-c', cmd]);
  if (r.code !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return r.stdout;
}

export function ethtoolStats(bed: NetnsPair, side: 'a' | 'b', ifname: string): Map<string, number> {
  const out = sh(bed, side, `ethtool -S ${ifname}`);
  const m = new Map<string, number>();
  for (const line of out.split('\n')) {
    const x = /^\s*([\w]+):\s+(\d+)/.exec(line);
    if (x) m.set(x[1]!, Number(x[2]));
  }
  return m;
}

/** The receiving veth's NAPI kthreads (threaded NAPI), pinned to CPU1. */
export function napiThreads(bed: NetnsPair): string[] {
  const ps = execFileSync('ps', ['-eo', 'pid,comm'], { encoding: 'utf8' });
  const want = `napi/${bed.b.ifname}`.slice(0, 15);
  const pids: string[] = [];
  for (const line of ps.split('\n')) {
    const [pid, comm] = line.trim().split(/\s+/);
    if (pid && comm?.startsWith(want)) pids.push(pid);
  }
  return pids;
}

export function pinNapi(pids: string[]): void {
  for (const pid of pids) execFileSync('taskset', ['-pc', '1', pid], { stdio: 'ignore' });
}

/** CPU time (ns) the threads have run (schedstat: time on CPU). */
export function cpuTimeNs(pids: string[]): number {
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

/**
 * The sending veth's counters, read from the root namespace through a process
 * inside namespace a (/proc/PID/net/dev: no process start, so a window is
 * timed to the microsecond). veth reports there, for the sender: tx_packets =
 * frames the peer's XDP received, tx_dropped = frames refused by the peer's
 * full ring (ethtool's xdp_xmit_errors).
 */
export function senderCounters(pid: number, ifname: string): { rx: number; lost: number; at: bigint } {
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

/** Sum of run_time_ns and run_cnt over the XDP sink programs (kernel.bpf_stats_enabled=1), by bpftool. */
export function progStats(): { ns: number; cnt: number } {
  if (!PROG_STATS) return { ns: 0, cnt: 0 };
  const names = new Set(['bare_drop', 'bare_parse_drop', 'hash32_drop', 'trie_drop', 'fw_xdp_ingress', 'fw_xdp_noev']);
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
