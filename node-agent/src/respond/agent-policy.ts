// A detection policy as the agent runs it (issue 18): the AgentPolicy of the
// Sync stream's PolicySet turned into the kernel's match and limits and the
// local ban. Pure. The control plane validated the policy; a value the agent
// cannot run (an unknown protocol from a newer control plane) is refused
// here and logged by the responder, never half-applied.

import { Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { AgentPolicy } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { PolicyProtocol, SourceGrouping } from '../../../proto/gen/fleetwall/v1/policy.js';
import type { KernelPolicy, PolicyProtocol as KernelProtocol } from '../datapath/policy-maps.js';

export interface LocalPolicy {
  /** The control plane's policy id and the revision that last wrote it. */
  readonly id: bigint;
  readonly revision: bigint;
  readonly name: string;
  /** The kernel's view, without its kernel id (the evaluator assigns it). */
  readonly kernel: Omit<KernelPolicy, 'id'>;
  readonly windowMs: number;
  readonly monitor: boolean;
  readonly banMs: number;
  readonly maxBansPerSecond: number;
}

const PROTOCOLS: Partial<Record<PolicyProtocol, KernelProtocol>> = {
  [PolicyProtocol.POLICY_PROTOCOL_ANY]: 'any',
  [PolicyProtocol.POLICY_PROTOCOL_TCP]: 'tcp',
  [PolicyProtocol.POLICY_PROTOCOL_UDP]: 'udp',
  [PolicyProtocol.POLICY_PROTOCOL_ICMP]: 'icmp',
};

function durationMs(d: { seconds: bigint; nanos: number } | undefined): number {
  return d ? Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6) : 0;
}

/** The policy as the agent runs it, or a reason it cannot. */
export function localPolicyOf(p: AgentPolicy): LocalPolicy | string {
  const m = p.match;
  const t = p.threshold;
  if (!m || !t) return `policy ${p.name}: match and threshold are required`;
  const protocol = PROTOCOLS[m.protocol];
  if (!protocol) return `policy ${p.name}: unknown protocol ${m.protocol}`;
  const windowMs = durationMs(t.window) || 1000;
  if (windowMs < 1) return `policy ${p.name}: window under 1 ms`;
  if (t.packetsPerSecond === 0n && t.bytesPerSecond === 0n) return `policy ${p.name}: no threshold`;
  const ports = m.ports.map((r) => [r.first, r.last || r.first] as const);
  if (ports.some(([a, b]) => a < 1 || b > 65535 || b < a)) return `policy ${p.name}: bad port range`;
  const perWindow = (rate: bigint) => (rate === 0n ? 0n : (rate * BigInt(windowMs) + 999n) / 1000n);
  const network = p.grouping === SourceGrouping.SOURCE_GROUPING_NETWORK;
  return {
    id: p.id,
    revision: p.revision,
    name: p.name,
    kernel: {
      direction: m.direction === Direction.DIRECTION_EGRESS ? 'egress' : 'ingress',
      protocol,
      synOnly: m.tcpSynOnly,
      ports,
      v4Len: network ? 24 : 32,
      v6Len: network ? 64 : 128,
      windowNs: BigInt(windowMs) * 1_000_000n,
      limitPackets: perWindow(t.packetsPerSecond),
      limitBytes: perWindow(t.bytesPerSecond),
    },
    windowMs,
    monitor: p.mode === Mode.MODE_MONITOR,
    banMs: Math.max(durationMs(p.banDuration), windowMs),
    maxBansPerSecond: p.maxBansPerSecond || 50,
  };
}
