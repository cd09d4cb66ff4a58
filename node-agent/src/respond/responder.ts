// The agent's responder (issue 18): it writes the node's detection policies
// into the kernel, reads the kernel's hits (source groups over a policy's
// limit) every `intervalMs`, bans each one on this node at once - an
// agent-local deny rule with the ban's expiry, through the engine like the
// failsafe entries, so allow-beats-deny still lets an allowed source through
// and the ban expires on time even while disconnected - and then reports the
// detection to the control plane, which bans fleet-wide. Monitor mode: the
// report says "would ban", nothing is banned. evaluator.ts and
// local-bans.ts decide; this file does the reads, the writes and the timer.

import type { Logger } from 'pino';
import { formatPrefix } from '../../../common/src/cidr.js';
import type { AgentPolicy, Detection } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { Engine } from '../engine.js';
import type { PolicyCounter } from '../datapath/policy-maps.js';
import { type LocalPolicy, localPolicyOf } from './agent-policy.js';
import { type DetectionReport, Evaluator } from './evaluator.js';
import { planBanRules } from './local-bans.js';

/** Reports kept while the control plane is away (the oldest give way). */
const MAX_PENDING_REPORTS = 10_000;

export interface ResponderStats {
  policies: number;
  detections: number;
  localBans: number;
  rateLimited: number;
  lostHits: number;
  pendingReports: number;
  droppedReports: number;
  /** The most packets one policy's sketch counted in its window (at the last poll). */
  windowPackets: bigint;
  /** The largest count-min margin (packets) over the limit a group must pass to be reported. */
  marginPackets: bigint;
}

export type SendDetection = (d: Detection) => boolean;

export class Responder {
  private readonly evaluator = new Evaluator();
  private next = 0n;
  private timer: NodeJS.Timeout | undefined;
  private readonly pending: Detection[] = [];
  private running = false;
  readonly stats: ResponderStats = {
    policies: 0,
    detections: 0,
    localBans: 0,
    rateLimited: 0,
    lostHits: 0,
    pendingReports: 0,
    droppedReports: 0,
    windowPackets: 0n,
    marginPackets: 0n,
  };
  /** Called after each local ban is in the kernel (tests, bench). */
  onBanned: ((r: DetectionReport) => void) | undefined;

  constructor(
    private readonly counter: PolicyCounter,
    private readonly engine: Pick<Engine, 'replaceLocalRules'>,
    private readonly send: SendDetection,
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Starts polling at the present of the hit ring. The kernel's policies of
   * an earlier process are cleared: their ids mean nothing to this one; the
   * control plane sends the node's policies after InSync.
   */
  start(): void {
    this.counter.writePolicies([]);
    this.next = this.counter.policyStats().hits;
    this.timer = setInterval(() => void this.poll(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The node's policies, whole (PolicySet). */
  setPolicies(policies: readonly AgentPolicy[]): void {
    const local: LocalPolicy[] = [];
    for (const p of policies) {
      const l = localPolicyOf(p);
      if (typeof l === 'string') this.log.warn({ policy: p.name, problem: l }, 'a detection policy the agent cannot run: skipped');
      else local.push(l);
    }
    const { kernel, refused } = this.evaluator.setPolicies(local);
    for (const p of refused) this.log.warn({ policy: p.name }, 'more than 8 detection policies select this node: skipped');
    this.counter.writePolicies(kernel);
    this.stats.policies = kernel.length;
    this.log.info({ policies: local.map((p) => `${p.name}@${p.revision}`) }, 'detection policies');
  }

  /** Sends what waited for the control plane (a new stream is live). */
  flush(): void {
    while (this.pending.length > 0) {
      if (!this.send(this.pending[0]!)) break;
      this.pending.shift();
    }
    this.stats.pendingReports = this.pending.length;
  }

  /** One round: read hits, ban, report. Never two at once. */
  async poll(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      // Reports that waited (the stream was down, or a write failed) go first.
      if (this.pending.length > 0) this.flush();
      const read = this.counter.readPolicyHits(this.next);
      this.next = read.next;
      this.stats.lostHits += read.lost;
      if (read.lost > 0) this.log.warn({ lost: read.lost }, 'detections overwritten in the kernel ring before they were read');
      if (read.hits.length === 0) return;
      const now = this.now();
      const ev = this.evaluator.evaluate(read.hits, now);
      this.stats.rateLimited += ev.rateLimited;
      this.stats.detections += ev.reports.length;
      if (ev.bans.length > 0) {
        await this.engine.replaceLocalRules((current) => planBanRules(current, ev.bans, now), 'ban');
        this.stats.localBans += ev.bans.length;
      }
      for (const r of ev.reports) {
        if (r.bannedLocally) this.onBanned?.(r);
        this.report(r);
      }
    } catch (e) {
      this.log.error({ err: e }, 'detection round failed');
    } finally {
      this.running = false;
      try {
        // The count-min margin follows the traffic each round (bpf/include/fw_policy_abi.h).
        this.counter.refreshMargins();
        const st = this.counter.policyStats();
        this.stats.windowPackets = st.windowPackets;
        this.stats.marginPackets = st.marginPackets;
      } catch (e) {
        this.log.error({ err: e }, 'sketch margins not refreshed');
      }
    }
  }

  private report(r: DetectionReport): void {
    const windowMs = r.policy.windowMs;
    const d: Detection = {
      kind: 'detection',
      policyId: r.policy.id,
      policy: r.policy.name,
      address: Buffer.from(r.addr),
      prefixLength: r.len,
      packets: r.packets,
      bytes: r.bytes,
      window: { seconds: BigInt(Math.floor(windowMs / 1000)), nanos: (windowMs % 1000) * 1_000_000 },
      packetsPerSecond: r.packetsPerSecond,
      bytesPerSecond: r.bytesPerSecond,
      detectTime: new Date(r.detectUnixMs),
      monitor: r.monitor,
      bannedLocally: r.bannedLocally,
    };
    this.log.info(
      {
        policy: r.policy.name,
        source: formatPrefix({ family: r.family, bytes: r.addr, len: r.len }),
        pps: Math.round(r.packetsPerSecond),
        monitor: r.monitor,
        banned: r.bannedLocally,
      },
      r.monitor ? 'detection (monitor: would ban)' : 'detection',
    );
    if (this.pending.length === 0 && this.send(d)) return;
    this.pending.push(d);
    if (this.pending.length > MAX_PENDING_REPORTS) {
      this.pending.shift();
      this.stats.droppedReports++;
    }
    this.stats.pendingReports = this.pending.length;
  }
}
