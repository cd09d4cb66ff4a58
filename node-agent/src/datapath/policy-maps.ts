// The detection policies' maps (bpf/include/fw_policy_abi.h, issue 18):
// fw_pol_cfg written whole with one update, the hit ring and its head read
// through mappings (no syscall per poll), the group table's fill read for
// diagnostics. The responder (node-agent/src/respond/) codes against
// PolicyCounter and never sees these layouts.

import { constants as osConstants } from 'node:os';
import type { RuleDirection } from '../../../common/src/policy.js';
import { FW_DIR, LAYOUT, MAP } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { DatapathError } from './errors.js';
import { type Mapping, mmapMap } from './libbpf.js';
import {
  FW_POL_CLASS,
  FW_POL_F_SYN_ONLY,
  FW_POL_HITS,
  FW_POL_MAX,
  FW_POL_PORT_RANGES,
  FW_POL_PROTO,
  FW_POL_SOURCES,
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
  /** Groups created in the LRU (each may have evicted another: the churn). */
  readonly inserts: bigint;
  /** The LRU's fixed size. */
  readonly capacity: number;
}

/** The datapath role the responder uses. */
export interface PolicyCounter {
  /** Replaces the policies the kernel counts (at most FW_POL_MAX; one map update). */
  writePolicies(policies: readonly KernelPolicy[]): void;
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

/** fw_pol_cfg[0] for `policies`. */
export function encodePolicySet(policies: readonly KernelPolicy[]): Buffer {
  if (policies.length > FW_POL_MAX) throw new RangeError(`at most ${FW_POL_MAX} policies per node, got ${policies.length}`);
  const b = Buffer.alloc(S.size);
  let mask = 0;
  const classes = [0, 0];
  policies.forEach((p, i) => {
    if (!Number.isInteger(p.id) || p.id < 1 || p.id > 0xffffffff) throw new RangeError(`policy id ${p.id}`);
    if (p.ports.length > FW_POL_PORT_RANGES) throw new RangeError(`at most ${FW_POL_PORT_RANGES} port ranges`);
    const o = S.fields.p + i * P.size;
    const dir = FW_DIR[p.direction];
    mask |= 1 << dir;
    // The protocols the programs let through to the counting (fw_policy_wants); any: every one, including others.
    const all = FW_POL_CLASS.icmp | FW_POL_CLASS.tcp | FW_POL_CLASS.udp | FW_POL_CLASS.other;
    classes[dir] = classes[dir]! | (p.protocol === 'any' ? all : FW_POL_CLASS[p.protocol]);
    b.writeUInt32LE(p.id, o + P.fields.id);
    b.writeUInt8(dir, o + P.fields.direction);
    b.writeUInt8(FW_POL_PROTO[p.protocol], o + P.fields.proto);
    b.writeUInt8(p.synOnly ? FW_POL_F_SYN_ONLY : 0, o + P.fields.flags);
    b.writeUInt8(p.ports.length, o + P.fields.nports);
    b.writeUInt8(p.v4Len, o + P.fields.v4_len);
    b.writeUInt8(p.v6Len, o + P.fields.v6_len);
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
  return b;
}

/** The policy maps of an open datapath (shared maps: pinned once, outside the generations). */
export class PolicyMaps implements PolicyCounter {
  private hits: Mapping | undefined;
  private stat: Mapping | undefined;
  private closed = false;
  private readonly key0 = Buffer.alloc(4);

  constructor(
    private readonly cfg: BpfMap,
    private readonly src: BpfMap,
    private readonly hitMap: BpfMap,
    private readonly statMap: BpfMap,
  ) {}

  writePolicies(policies: readonly KernelPolicy[]): void {
    this.assertOpen();
    this.cfg.update(this.key0, encodePolicySet(policies));
  }

  private views(): { hits: DataView; stat: DataView } {
    this.assertOpen();
    this.hits ??= mmapMap(this.hitMap.fd, FW_POL_HITS * H.size, MAP.POL_HITS);
    this.stat ??= mmapMap(this.statMap.fd, LAYOUT.fw_pol_stat.size, MAP.POL_STAT);
    return { hits: new DataView(this.hits.buffer), stat: new DataView(this.stat.buffer) };
  }

  policyStats(): PolicyStats {
    const { stat } = this.views();
    return {
      hits: stat.getBigUint64(LAYOUT.fw_pol_stat.fields.head, true),
      inserts: stat.getBigUint64(LAYOUT.fw_pol_stat.fields.inserts, true),
      capacity: this.src.maxEntries || FW_POL_SOURCES,
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
    this.hits = undefined;
    this.stat = undefined;
  }

  private assertOpen(): void {
    if (this.closed) throw new DatapathError('use policy maps', MAP.POL_CFG, osConstants.errno.EBADF, 'the datapath was closed');
  }
}

/** Checks a map set has the policy maps (an object built before ABI 8 has none). */
export function policyMapsOf(get: (name: (typeof MAP)[keyof typeof MAP]) => BpfMap | undefined, pinDir: string): PolicyMaps {
  const cfg = get(MAP.POL_CFG);
  const src = get(MAP.POL_SRC);
  const hits = get(MAP.POL_HITS);
  const stat = get(MAP.POL_STAT);
  if (!cfg || !src || !hits || !stat) throw new DatapathError('open policy maps', pinDir, 2, 'the pinned maps have no policy maps');
  return new PolicyMaps(cfg, src, hits, stat);
}
