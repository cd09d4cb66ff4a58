// The real xdp-filter (xdp-tools), the anchor of mpps.xdp_filter_10k_drop:
// whether this host can run it (installed, no instance of someone else's),
// its CLI inside namespace b, its map of source addresses and its drop count.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { BpfMap } from '../../node-agent/src/datapath/bpf-map.js';
import { possibleCpus } from '../../node-agent/src/datapath/libbpf.js';
import type { NetnsPair } from '../../test/support/netns.js';

/** xdp-filter's pins (a fixed path: one instance per host). */
export const XDP_FILTER_PINS = '/sys/fs/bpf/xdp-filter';

/** True if xdp-filter (xdp-tools) is installed and not in use on this host (the bench must not touch a real one). */
export function xdpFilterUsable(): boolean {
  try {
    execFileSync('xdp-filter', ['help'], { stdio: 'ignore' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
  }
  return !existsSync(XDP_FILTER_PINS);
}

/** Runs xdp-filter in namespace b with the host's bpffs (nsenter --net; `ip netns exec` would hide /sys/fs/bpf). */
export function xdpFilter(bed: NetnsPair, args: string[]): void {
  const [cmd, ...rest] = [...bed.nsenter('b'), 'xdp-filter', ...args];
  execFileSync(cmd!, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Fills xdp-filter's IPv4 map (a per-CPU hash of address -> flags + hit
 * count) with `keys` as source-address rules (flag 1), as many as it holds.
 * The keys are the address bytes as in the packet.
 */
export function fillXdpFilter(keys: number[]): void {
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
export function xdpFilterDrops(): bigint {
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
