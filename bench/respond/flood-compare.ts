// bench:respond's comparison of the policies' two counting structures under
// a spoofed flood (issue 18: "choose by measurement"): the production
// count-min sketch (bpf/include/fw_policy.h) and ABI 9's LRU hash of 65,536
// groups (bpf/bench/pol_lru.h, the bench object xdp_ingress_pol_lru.bpf.o on
// the same pinned maps: the same parse, clock and policy loop). Each runs
// BPF_PROG_TEST_RUN, one frame per run (UDP to port 9, the bench policy),
// over the same schedule in one window (so the whole flood is in it):
//   - `sources` random spoofed sources, one packet each (a few twice);
//   - AT_LIMIT sources sending exactly the limit, spread over the flood:
//     never over it, so any report of them (or of a flood source) is false;
//   - HEAVY sources at 2x, 5x and 10x the limit, spread: found or missed.
// The sketch's margins are refreshed as the responder does (every 25 ms of
// wall time). Figures: ns per packet (the runs' own durations, averaged),
// false reports, heavy hitters found per class, the structure's kernel
// memory (memlock of its map).

import { join } from 'node:path';
import { formatAddress } from '../../common/src/cidr.js';
import { MAP, programNames } from '../../node-agent/src/datapath/abi.js';
import type { BpfDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { type LoadedObject, loadObject } from '../../node-agent/src/datapath/bpf-object.js';
import { memlockOf } from '../../node-agent/src/datapath/kernel-memory.js';
import { kernelPolicy } from '../../test/support/policy-fixtures.js';
import type { MarginRule } from '../../node-agent/src/datapath/sketch-margin.js';
import { progTestRun } from '../../node-agent/src/datapath/test-run.js';
import { ipFrame } from '../../test/support/frames.js';
import { pinPathIn } from '../dataplane/sets.js';

export const AT_LIMIT = 1000;
export const HEAVY = 100;
export const HEAVY_TIMES = [2, 5, 10] as const;

export interface FloodFigures {
  readonly structure: string;
  readonly nsPerPacket: number;
  readonly packets: number;
  /** Reports of sources that never sent more than the limit in the window. */
  readonly falseReports: number;
  /** Heavy hitters reported, per class (2x, 5x, 10x the limit), of HEAVY each. */
  readonly heavyFound: readonly number[];
  readonly kernelBytes: number;
  /** The largest packet margin the agent wrote (the sketch). */
  readonly marginPackets: number;
  /** Hit records (a source reported again when the margin grew past its estimate is two). */
  readonly reports: number;
  /** Hit records the ring overwrote before they were read (4,096 records). */
  readonly lost: number;
}

/** The LRU build on `dp`'s pinned maps, the program of dp's pair (with event code or without); close it when done. */
export function loadLruVariant(dp: BpfDatapath): { obj: LoadedObject; fd: number } {
  const prog = programNames(dp.eventCode).xdp;
  const obj = loadObject(join(import.meta.dirname, '../../bpf/bench/obj/xdp_ingress_pol_lru.bpf.o'), {
    pinPath: pinPathIn(dp.pinDir, 'fw_'),
    programs: [prog],
  });
  return { obj, fd: obj.progFd(prog) };
}

/**
 * Runs the flood through `run` (one frame, one BPF_PROG_TEST_RUN; returns its
 * duration) with policy `policyId` counting at `limit` packets per window.
 */
export function flood(
  dp: BpfDatapath,
  structure: string,
  run: (f: Buffer) => number,
  kernelBytes: number,
  o: { sources: number; limit: number; policyId: number; marginRule?: MarginRule; noPolicy?: boolean },
): FloodFigures {
  const policy = kernelPolicy({ id: o.policyId, windowNs: 3600n * 1_000_000_000n, limitPackets: BigInt(o.limit) });
  dp.policies.marginRule = o.marginRule ?? 'quantile';
  dp.policies.writePolicies(o.noPolicy ? [] : [policy]);
  const from = dp.policies.policyStats().hits;
  // The controlled sources (100.64.0.0/10, which the random ones avoid): at the limit, then each heavy class.
  const sched = new Map<number, number[]>();
  let seed = 0x2545f491;
  const rnd = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const plan = (addr: number, k: number) => {
    const phase = rnd();
    for (let j = 0; j < k; j++) {
      const at = Math.floor(((j + phase) * o.sources) / k);
      const l = sched.get(at);
      if (l) l.push(addr);
      else sched.set(at, [addr]);
    }
  };
  const base = 0x64400000; // 100.64.0.0
  for (let i = 0; i < AT_LIMIT; i++) plan(base + i, o.limit);
  HEAVY_TIMES.forEach((t, c) => {
    for (let i = 0; i < HEAVY; i++) plan(base + 0x10000 * (c + 1) + i, o.limit * t);
  });
  const f = ipFrame('10.0.0.1', '192.0.2.1');
  let x = 0x9e3779b9;
  let ns = 0;
  let packets = 0;
  let last = performance.now();
  let maxMargin = 0n;
  const send = (addr: number) => {
    f.writeUInt32BE(addr >>> 0, 14 + 12);
    ns += run(f);
    packets++;
  };
  for (let i = 0; i < o.sources; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    if (x >>> 22 !== 0x191) send(x); // not in 100.64.0.0/10
    const c = sched.get(i);
    if (c) for (const a of c) send(a);
    if ((i & 1023) === 0 && performance.now() - last >= 25) {
      dp.policies.refreshMargins();
      const m = dp.policies.policyStats().marginPackets;
      if (m > maxMargin) maxMargin = m;
      last = performance.now();
    }
  }
  // Every hit, the ring read whole (its 4,096 records hold more than a flood without false reports writes).
  const read = dp.policies.readPolicyHits(from);
  const hits = read.hits.filter((h) => h.policy === o.policyId);
  // Distinct sources (a group may be reported again in its window when the margin grew past its estimate).
  let falseReports = 0;
  const heavyFound = HEAVY_TIMES.map(() => 0);
  const seen = new Set<number>();
  for (const h of hits) {
    const a = new DataView(h.addr.buffer, h.addr.byteOffset).getUint32(0);
    if (seen.has(a)) continue;
    seen.add(a);
    const c = (a - base) >>> 16;
    if (a >>> 22 === 0x191 && c >= 1 && c <= HEAVY_TIMES.length) heavyFound[c - 1]!++;
    else falseReports++;
  }
  if (process.env.BENCH_TRACE && falseReports > 0) {
    const some = hits.slice(0, 5).map((h) => `${formatAddress({ family: 4, bytes: h.addr })}:${h.packets}`);
    process.stderr.write(`${structure}: ${falseReports} false reports, e.g. ${some.join(' ')}\n`);
  }
  dp.policies.writePolicies([]);
  return {
    structure,
    nsPerPacket: ns / packets,
    packets,
    falseReports,
    heavyFound,
    kernelBytes,
    marginPackets: Number(maxMargin),
    reports: hits.length,
    lost: read.lost,
  };
}

/**
 * The flood without policies (the runs' own cost: each run is one packet),
 * on the production sketch, on the LRU build, and on the sketch with the
 * textbook margin, one after the other on the same datapath.
 */
export function floodCompare(dp: BpfDatapath, sources: number, limit: number): FloodFigures[] {
  const lru = loadLruVariant(dp);
  try {
    const sketchBytes = memlockOf(dp.mapFd(MAP.POL_CMS));
    const lruBytes = memlockOf(lru.obj.mapFd('bench_pol_src'));
    const prod = (f: Buffer) => dp.testRun('xdp', f).durationNs;
    const old = (f: Buffer) => progTestRun(lru.fd, f).durationNs;
    return [
      flood(dp, 'none', prod, 0, { sources, limit, policyId: 0x5e7c0000, noPolicy: true }),
      flood(dp, 'sketch', prod, sketchBytes, { sources, limit, policyId: 0x5e7c0001 }),
      flood(dp, 'lru', old, lruBytes, { sources, limit, policyId: 0x5e7c0002 }),
      flood(dp, 'sketch_count_min_margin', prod, sketchBytes, { sources, limit, policyId: 0x5e7c0003, marginRule: 'count-min' }),
    ];
  } finally {
    lru.obj.close();
  }
}
