// The responder's decisions (issue 18), pure: which kernel id each policy
// version counts under, and for each hit the kernel reported (a source group
// over a policy's limit in one window) whether to ban it on this node now
// and what to report. No I/O and no clock of its own: the caller passes the
// time, the hits and the policies.

import type { KernelPolicy, PolicyHit } from '../datapath/policy-maps.js';
import type { LocalPolicy } from './agent-policy.js';
import { MAX_KERNEL_POLICIES } from '../datapath/policy-maps.js';

/** A source to ban on this node: an agent-local deny of its group. */
export interface LocalBan {
  readonly family: 4 | 6;
  readonly addr: Uint8Array;
  readonly len: number;
  readonly direction: 'ingress' | 'egress';
  readonly expireUnixMs: number;
}

/** What the control plane hears (AgentService Detection). */
export interface DetectionReport {
  readonly policy: LocalPolicy;
  readonly family: 4 | 6;
  readonly addr: Uint8Array;
  readonly len: number;
  readonly packets: bigint;
  readonly bytes: bigint;
  readonly packetsPerSecond: number;
  readonly bytesPerSecond: number;
  readonly detectUnixMs: number;
  readonly monitor: boolean;
  readonly bannedLocally: boolean;
}

export interface Evaluation {
  readonly bans: LocalBan[];
  readonly reports: DetectionReport[];
  /** Hits of a policy version no longer counted (a change raced the read). */
  readonly stale: number;
  /** Sources over the limit the local ban rate did not let the agent ban (the control plane still decides). */
  readonly rateLimited: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class Evaluator {
  /** `${id}/${revision}` -> kernel id (a policy version keeps its counts while it does not change). */
  private readonly kernelIds = new Map<string, number>();
  private readonly byKernelId = new Map<number, LocalPolicy>();
  private readonly buckets = new Map<number, Bucket>();
  private nextKernelId = 1;

  /** The policies to count (at most 8: the rest are returned as refused); their kernel form. */
  setPolicies(policies: readonly LocalPolicy[]): { kernel: KernelPolicy[]; refused: LocalPolicy[] } {
    const kept = policies.slice(0, MAX_KERNEL_POLICIES);
    const refused = policies.slice(MAX_KERNEL_POLICIES);
    const keys = new Map<string, number>();
    this.byKernelId.clear();
    const kernel: KernelPolicy[] = [];
    for (const p of kept) {
      const key = `${p.id}/${p.revision}`;
      let kid = this.kernelIds.get(key);
      if (kid === undefined) {
        kid = this.nextKernelId++;
        if (this.nextKernelId > 0xffffffff) this.nextKernelId = 1;
      }
      keys.set(key, kid);
      this.byKernelId.set(kid, p);
      kernel.push({ id: kid, ...p.kernel });
    }
    this.kernelIds.clear();
    for (const [k, v] of keys) this.kernelIds.set(k, v);
    for (const kid of [...this.buckets.keys()]) if (!this.byKernelId.has(kid)) this.buckets.delete(kid);
    return { kernel, refused };
  }

  /** The policy a kernel id counts for (undefined: no longer counted). */
  policyOf(kernelId: number): LocalPolicy | undefined {
    return this.byKernelId.get(kernelId);
  }

  /** One token of policy kid's local ban rate, if there is one left. */
  private take(kid: number, p: LocalPolicy, nowMs: number): boolean {
    const rate = p.maxBansPerSecond;
    let b = this.buckets.get(kid);
    if (!b) this.buckets.set(kid, (b = { tokens: rate, at: nowMs }));
    b.tokens = Math.min(rate, b.tokens + ((nowMs - b.at) / 1000) * rate);
    b.at = nowMs;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  evaluate(hits: readonly PolicyHit[], nowMs: number): Evaluation {
    const bans: LocalBan[] = [];
    const reports: DetectionReport[] = [];
    let stale = 0;
    let rateLimited = 0;
    for (const h of hits) {
      const p = this.byKernelId.get(h.policy);
      if (!p) {
        stale++;
        continue;
      }
      const len = h.family === 4 ? p.kernel.v4Len : p.kernel.v6Len;
      const seconds = p.windowMs / 1000;
      let banned = false;
      if (!p.monitor) {
        if (this.take(h.policy, p, nowMs)) {
          bans.push({ family: h.family, addr: h.addr, len, direction: p.kernel.direction, expireUnixMs: nowMs + p.banMs });
          banned = true;
        } else rateLimited++;
      }
      reports.push({
        policy: p,
        family: h.family,
        addr: h.addr,
        len,
        packets: h.packets,
        bytes: h.bytes,
        packetsPerSecond: Number(h.packets) / seconds,
        bytesPerSecond: Number(h.bytes) / seconds,
        detectUnixMs: nowMs,
        monitor: p.monitor,
        bannedLocally: banned,
      });
    }
    return { bans, reports, stale, rateLimited };
  }
}
