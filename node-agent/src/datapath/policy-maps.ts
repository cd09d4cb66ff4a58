// The detection policies' maps (bpf/include/fw_policy_abi.h, issue 18):
// fw_pol_cfg written whole with one update (with this process's random hash
// seeds, the bitmaps of policy slots per direction, class and port that
// the programs classify a packet by, ABI 13, and each window's reciprocal in
// jiffies at the kernel's HZ, ABI 14: policy-window.ts, kernel-clock.ts),
// the hit ring and its head read through mappings (no syscall per
// poll), and each policy's count-min margin: the packets (bytes) its sketch
// counted in the window (the window the kernel's jiffies are in now), read
// from the sketch's first row through a mapping,
// times e / width, written where the kernel reads it. The responder
// (node-agent/src/respond/) codes against PolicyCounter and never sees these
// layouts.

import { randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import type { RuleDirection } from '../../../common/src/policy.js';
import { FW_DIR, LAYOUT, MAP } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { DatapathError } from './errors.js';
import { type MarginRule, rowMargin } from './sketch-margin.js';
import type { KernelClock } from './kernel-clock.js';
import { type Mapping, mmapMap } from './libbpf.js';
import { windowEpoch, windowRecip } from './policy-window.js';
import {
  FW_POL_CELLS,
  FW_POL_CIDX,
  FW_POL_CLASS,
  FW_POL_F_SYN_ONLY,
  FW_POL_HITS,
  FW_POL_MAX,
  FW_POL_PORTS,
  FW_POL_PORT_RANGES,
  FW_POL_PROTO,
  FW_POL_ROWS,
  FW_POL_TAG_MUL,
  FW_POL_WIDTH,
} from './policy-abi.js';

export type PolicyProtocol = 'any' | 'tcp' | 'udp' | 'icmp';

/** One policy as the kernel counts it. */
export interface KernelPolicy {
  /** 1..2^32-1, unique per policy version: carried in every group key and hit. */
  readonly id: number;
  readonly direction: RuleDirection;
  readonly protocol: PolicyProtocol;
  readonly synOnly: boolean;
  /** Inclusive destination port ranges; empty = every packet of the protocol. */
  readonly ports: readonly (readonly [number, number])[];
  readonly v4Len: 32 | 24;
  readonly v6Len: 128 | 64;
  readonly windowNs: bigint;
  /** A group with more than this many packets (bytes) in one window is reported; 0n = no such limit. */
  readonly limitPackets: bigint;
  readonly limitBytes: bigint;
}

/** A group that crossed a policy's limit (one per group and window). */
export interface PolicyHit {
  readonly seq: bigint;
  readonly policy: number;
  readonly family: 4 | 6;
  /** The group's address, masked (4 or 16 bytes). */
  readonly addr: Uint8Array;
  readonly packets: bigint;
  readonly bytes: bigint;
  readonly elapsedNs: bigint;
  /** Kernel time (CLOCK_MONOTONIC_COARSE ns, a tick's resolution) of the crossing packet. */
  readonly atNs: bigint;
}

export interface PolicyHitRead {
  readonly hits: PolicyHit[];
  /** The sequence number to read from next time. */
  readonly next: bigint;
  /** Records the ring overwrote before they were read. */
  readonly lost: number;
}

export interface PolicyStats {
  /** Hit records written since the maps were created. */
  readonly hits: bigint;
  /** The most packets one policy's sketch counted in its window at the last refreshMargins. */
  readonly windowPackets: bigint;
  /** The largest packet margin written then (a group is reported above limit + margin). */
  readonly marginPackets: bigint;
  /** Bytes of kernel memory the sketches hold (fixed at load). */
  readonly sketchBytes: number;
}

/** The datapath role the responder uses. */
export interface PolicyCounter {
  /** Replaces the policies the kernel counts (at most FW_POL_MAX; one map update). */
  writePolicies(policies: readonly KernelPolicy[]): void;
  /**
   * Writes each policy's count-min margin (sketch-margin.ts: the least m with
   * at most 1 cell in 64 of its sketch's row above m, in the current or, if
   * more, the previous window): call it at each poll (the margin lags the
   * traffic by one call).
   */
  refreshMargins(): void;
  /** Hit records from sequence number `from` (use `policyStats().hits` to start at the present). */
  readPolicyHits(from: bigint, max?: number): PolicyHitRead;
  policyStats(): PolicyStats;
}

export const MAX_KERNEL_POLICIES = FW_POL_MAX;
export const MAX_PORT_RANGES = FW_POL_PORT_RANGES;

const P = LAYOUT.fw_policy;
const S = LAYOUT.fw_policy_set;
const K = LAYOUT.fw_pol_key;
const H = LAYOUT.fw_pol_hit;
const SEED = LAYOUT.fw_pol_seed;
const CELL = LAYOUT.fw_pol_cell;
const ST = LAYOUT.fw_pol_stat;
/** Bytes of one policy's sketch (its rows), and of one row. */
const ROW_BYTES = FW_POL_WIDTH * CELL.size;
const SLOT_BYTES = FW_POL_ROWS * ROW_BYTES;

/** The tag the kernel gives a cell of policy `id` in window `epoch`. */
export function cellTag(epoch: bigint, id: number): number {
  return Number((epoch + BigInt(id) * BigInt(FW_POL_TAG_MUL)) & 0xffffffffn);
}

/** One row's hash seeds (a odd). */
export interface SketchSeed {
  readonly a: bigint;
  readonly b: bigint;
  readonly c: bigint;
}

/** FW_POL_ROWS rows of random seeds (an attacker who does not know them cannot aim collisions at a victim). */
export function randomSeeds(): SketchSeed[] {
  const r = randomBytes(FW_POL_ROWS * 24);
  return Array.from({ length: FW_POL_ROWS }, (_, i) => ({
    a: r.readBigUInt64LE(i * 24) | 1n,
    b: r.readBigUInt64LE(i * 24 + 8),
    c: r.readBigUInt64LE(i * 24 + 16),
  }));
}

/** fw_pol_cfg[0] for `policies` (their slots are their indexes), with the sketch's seeds; `hz`: the kernel's HZ (the windows' jiffies). */
export function encodePolicySet(policies: readonly KernelPolicy[], hz: number, seeds: readonly SketchSeed[] = randomSeeds()): Buffer {
  if (policies.length > FW_POL_MAX) throw new RangeError(`at most ${FW_POL_MAX} policies per node, got ${policies.length}`);
  const b = Buffer.alloc(S.size);
  let mask = 0;
  const classes = [0, 0];
  const l4 = [0, 0];
  // ABI 13: the slots (bit i = slot i) per direction that count a class, that are SYN-only, that count packets without ports, and per destination port.
  const classPols = [
    [0, 0, 0, 0],
    [0, 0, 0, 0],
  ];
  const synOnly = [0, 0];
  const noport = [0, 0];
  const portPols = [new Uint8Array(FW_POL_PORTS), new Uint8Array(FW_POL_PORTS)];
  policies.forEach((p, i) => {
    if (!Number.isInteger(p.id) || p.id < 1 || p.id > 0xffffffff) throw new RangeError(`policy id ${p.id}`);
    if (p.ports.length > FW_POL_PORT_RANGES) throw new RangeError(`at most ${FW_POL_PORT_RANGES} port ranges`);
    const o = S.fields.p + i * P.size;
    const dir = FW_DIR[p.direction];
    mask |= 1 << dir;
    // The protocols the programs let through to the counting (fw_policy_wants); any: every one, including others.
    const all = FW_POL_CLASS.icmp | FW_POL_CLASS.tcp | FW_POL_CLASS.udp | FW_POL_CLASS.other;
    classes[dir] = classes[dir]! | (p.protocol === 'any' ? all : FW_POL_CLASS[p.protocol]);
    // The L4 header is read only for a direction where some policy looks at ports or TCP flags.
    if (p.ports.length > 0 || p.synOnly) l4[dir] = 1;
    const bit = 1 << i;
    const cls = classPols[dir]!;
    if (p.protocol === 'any') for (let c = 0; c < cls.length; c++) cls[c] = cls[c]! | bit;
    else cls[FW_POL_CIDX[p.protocol]] = cls[FW_POL_CIDX[p.protocol]]! | bit;
    if (p.synOnly) synOnly[dir] = synOnly[dir]! | bit;
    const ports = portPols[dir]!;
    if (p.ports.length === 0) {
      noport[dir] = noport[dir]! | bit;
      for (let port = 0; port < FW_POL_PORTS; port++) ports[port] = ports[port]! | bit;
    }
    for (const [lo, hi] of p.ports) {
      if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi >= FW_POL_PORTS || lo > hi) {
        throw new RangeError(`policy ${p.id}: port range ${lo}-${hi}`);
      }
      for (let port = lo; port <= hi; port++) ports[port] = ports[port]! | bit;
    }
    if (p.windowNs <= 0n) throw new RangeError(`policy ${p.id}: window ${p.windowNs} ns`);
    const w = windowRecip(p.windowNs, hz);
    b.writeUInt32LE(p.id, o + P.fields.id);
    b.writeUInt8(dir, o + P.fields.direction);
    b.writeUInt8(FW_POL_PROTO[p.protocol], o + P.fields.proto);
    b.writeUInt8(p.synOnly ? FW_POL_F_SYN_ONLY : 0, o + P.fields.flags);
    b.writeUInt8(p.ports.length, o + P.fields.nports);
    b.writeUInt8(p.v4Len, o + P.fields.v4_len);
    b.writeUInt8(p.v6Len, o + P.fields.v6_len);
    b.writeUInt8(w.shift, o + P.fields.window_shift);
    b.writeUInt32LE(w.mul, o + P.fields.window_mul);
    b.writeBigUInt64LE(p.windowNs, o + P.fields.window_ns);
    b.writeBigUInt64LE(p.limitPackets, o + P.fields.limit_packets);
    b.writeBigUInt64LE(p.limitBytes, o + P.fields.limit_bytes);
    p.ports.forEach(([lo, hi], j) => {
      b.writeUInt16LE(lo, o + P.fields.port_lo + 2 * j);
      b.writeUInt16LE(hi, o + P.fields.port_hi + 2 * j);
    });
  });
  b.writeUInt32LE(mask, S.fields.dir_mask);
  b.writeUInt16LE(policies.length, S.fields.count);
  b.writeUInt8(classes[0]!, S.fields.class_mask);
  b.writeUInt8(classes[1]!, S.fields.class_mask + 1);
  b.writeUInt8(l4[0]!, S.fields.l4_mask);
  b.writeUInt8(l4[1]!, S.fields.l4_mask + 1);
  for (let d = 0; d < 2; d++) {
    b.writeUInt8(synOnly[d]!, S.fields.syn_only + d);
    b.writeUInt8(noport[d]!, S.fields.noport + d);
    classPols[d]!.forEach((m, c) => b.writeUInt8(m, S.fields.class_pols + 4 * d + c));
    b.set(portPols[d]!, S.fields.port_pols + d * FW_POL_PORTS);
  }
  seeds.slice(0, FW_POL_ROWS).forEach((sd, r) => {
    const o = S.fields.seed + r * SEED.size;
    b.writeBigUInt64LE(sd.a, o + SEED.fields.a);
    b.writeBigUInt64LE(sd.b, o + SEED.fields.b);
    b.writeBigUInt64LE(sd.c, o + SEED.fields.c);
  });
  return b;
}

/** The policy maps of an open datapath (shared maps: pinned once, outside the generations). */
export class PolicyMaps implements PolicyCounter {
  private hits: Mapping | undefined;
  private stat: Mapping | undefined;
  private sketch: Mapping | undefined;
  private closed = false;
  private readonly key0 = Buffer.alloc(4);
  /** This process's hash seeds: the same for every set it writes (a group keeps its cells). */
  private readonly seeds = randomSeeds();
  private policies: readonly KernelPolicy[] = [];
  private windowPackets = 0n;
  private marginPackets = 0n;
  /** How the margins are computed (sketch-margin.ts): 'count-min' only to compare (bench). */
  marginRule: MarginRule = 'quantile';

  constructor(
    private readonly cfg: BpfMap,
    private readonly cms: BpfMap,
    private readonly hitMap: BpfMap,
    private readonly statMap: BpfMap,
    private readonly clock: KernelClock,
  ) {}

  writePolicies(policies: readonly KernelPolicy[]): void {
    this.assertOpen();
    // HZ is measured at the first set that has a policy (a few ticks: kernel-clock.ts).
    this.cfg.update(this.key0, encodePolicySet(policies, policies.length > 0 ? this.clock.hz() : 0, this.seeds));
    this.policies = [...policies];
    this.refreshMargins();
  }

  private views(): { hits: DataView; stat: DataView } {
    this.assertOpen();
    this.hits ??= mmapMap(this.hitMap.fd, FW_POL_HITS * H.size, MAP.POL_HITS);
    this.stat ??= mmapMap(this.statMap.fd, ST.size, MAP.POL_STAT);
    return { hits: new DataView(this.hits.buffer), stat: new DataView(this.stat.buffer) };
  }

  refreshMargins(): void {
    this.views();
    this.sketch ??= mmapMap(this.cms.fd, FW_POL_CELLS * CELL.size, MAP.POL_CMS);
    const margins = new BigUint64Array(this.stat!.buffer, ST.fields.margin_packets, 2 * FW_POL_MAX);
    const jiffies = this.policies.length > 0 ? this.clock.now().jiffies : 0n; // the windows' clock (ABI 14)
    const hz = this.policies.length > 0 ? this.clock.hz() : 0;
    let maxN = 0;
    let maxM = 0n;
    for (let i = 0; i < FW_POL_MAX; i++) {
      const p = this.policies[i];
      if (!p) {
        margins[i] = 0n;
        margins[FW_POL_MAX + i] = 0n;
        continue;
      }
      // Row 0 of its sketch: every packet adds to one cell of it (sketch-margin.ts).
      const row = new Uint32Array(this.sketch.buffer, i * SLOT_BYTES, ROW_BYTES / 4);
      const epoch = windowEpoch(jiffies, windowRecip(p.windowNs, hz));
      const r = rowMargin(row, cellTag(epoch, p.id), cellTag(epoch - 1n, p.id), this.marginRule, p.limitBytes > 0n);
      const n = r.packets;
      const m = BigInt(r.marginPackets);
      margins[i] = m;
      margins[FW_POL_MAX + i] = BigInt(r.marginBytes);
      if (n > maxN) maxN = n;
      if (m > maxM) maxM = m;
    }
    this.windowPackets = BigInt(maxN);
    this.marginPackets = maxM;
  }

  policyStats(): PolicyStats {
    const { stat } = this.views();
    return {
      hits: stat.getBigUint64(ST.fields.head, true),
      windowPackets: this.windowPackets,
      marginPackets: this.marginPackets,
      sketchBytes: (this.cms.maxEntries || FW_POL_MAX) * SLOT_BYTES,
    };
  }

  readPolicyHits(from: bigint, max = FW_POL_HITS): PolicyHitRead {
    const { hits, stat } = this.views();
    const head = stat.getBigUint64(LAYOUT.fw_pol_stat.fields.head, true);
    const out: PolicyHit[] = [];
    let lost = 0;
    let seq = from;
    const ring = BigInt(FW_POL_HITS);
    if (head - seq > ring) {
      lost += Number(head - seq - ring);
      seq = head - ring;
    }
    while (seq < head && out.length < max) {
      const o = Number(seq % ring) * H.size;
      const want = seq + 1n;
      const before = hits.getBigUint64(o + H.fields.seq, true);
      if (before !== want) {
        // Not written yet (reserved, being filled): stop here and come back; or overwritten: lost.
        if (before < want) break;
        lost++;
        seq++;
        continue;
      }
      const k = o + H.fields.key;
      const family = hits.getUint8(k + K.fields.family) === 6 ? 6 : 4;
      const addr = new Uint8Array(hits.buffer.slice(k + K.fields.addr, k + K.fields.addr + (family === 4 ? 4 : 16)));
      const hit: PolicyHit = {
        seq,
        policy: hits.getUint32(k + K.fields.policy, true),
        family,
        addr,
        packets: hits.getBigUint64(o + H.fields.packets, true),
        bytes: hits.getBigUint64(o + H.fields.bytes, true),
        elapsedNs: hits.getBigUint64(o + H.fields.elapsed_ns, true),
        atNs: hits.getBigUint64(o + H.fields.at_ns, true),
      };
      // Still the same record after the reads: the ring did not lap it meanwhile.
      if (hits.getBigUint64(o + H.fields.seq, true) === want) out.push(hit);
      else lost++;
      seq++;
    }
    return { hits: out, next: seq, lost };
  }

  /** Unmaps the views; the datapath closes the maps themselves (nothing here is usable afterwards). */
  close(): void {
    this.closed = true;
    this.hits?.unmap();
    this.stat?.unmap();
    this.sketch?.unmap();
    this.hits = undefined;
    this.stat = undefined;
    this.sketch = undefined;
  }

  private assertOpen(): void {
    if (this.closed) throw new DatapathError('use policy maps', MAP.POL_CFG, osConstants.errno.EBADF, 'the datapath was closed');
  }
}

/** Checks a map set has the policy maps (an object built before ABI 8 has none; before ABI 11, no sketch). */
export function policyMapsOf(
  get: (name: (typeof MAP)[keyof typeof MAP]) => BpfMap | undefined,
  pinDir: string,
  clock: KernelClock,
): PolicyMaps {
  const cfg = get(MAP.POL_CFG);
  const cms = get(MAP.POL_CMS);
  const hits = get(MAP.POL_HITS);
  const stat = get(MAP.POL_STAT);
  if (!cfg || !cms || !hits || !stat) throw new DatapathError('open policy maps', pinDir, 2, 'the pinned maps have no policy maps');
  return new PolicyMaps(cfg, cms, hits, stat, clock);
}
