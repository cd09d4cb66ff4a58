// Validation of a detection policy (issue 18) at the edge: every field a
// request can get wrong is INVALID_POLICY naming the field (metadata
// `field`), before anything is stored. Pure; defaults filled in here, so the
// stored spec is complete.
import type { Duration } from '../../../proto/gen/google/protobuf/duration.js';
import { BanScope, type DetectionPolicy, PolicyProtocol, SourceGrouping } from '../../../proto/gen/fleetwall/v1/policy.js';
import { Direction, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { type Labels, selectorKey, validateSelector } from '../rules/selector.js';

/** A validated policy, every default filled in (what the store keeps). */
export interface PolicySpec {
  readonly name: string;
  readonly direction: Direction;
  readonly protocol: PolicyProtocol;
  readonly ports: readonly (readonly [number, number])[];
  readonly tcpSynOnly: boolean;
  readonly packetsPerSecond: bigint;
  readonly bytesPerSecond: bigint;
  readonly windowMs: number;
  readonly grouping: SourceGrouping;
  readonly banMs: number;
  readonly escalationFactor: number;
  readonly maxBanMs: number;
  readonly jitter: number;
  readonly scope: BanScope;
  readonly scopeSelector: Labels;
  readonly mode: Mode;
  readonly nodeSelector: Labels;
  readonly nodeSelectorKey: string;
  readonly maxBansPerSecond: number;
  /** Merge N+ banned sources of one /24 (/64) into one network ban; 0: never (specs stored before it: absent). */
  readonly mergeThreshold?: number;
  readonly comment: string;
}

/** A policy name: 1-63 of a-z 0-9 . _ -, starting and ending with a letter or digit. */
export const POLICY_NAME = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
const MAX_PORT_RANGES = 8;
const DAY_MS = 86_400_000;
/** A /24 holds 256 addresses: a higher threshold could never be reached there. */
export const MAX_MERGE_THRESHOLD = 256;

export function invalid(field: string, message: string): FleetwallError {
  return new FleetwallError('INVALID_POLICY', `${field}: ${message}`, { field });
}

export function checkPolicyName(name: string, field = 'name'): string {
  if (!POLICY_NAME.test(name))
    throw invalid(
      field,
      `${JSON.stringify(name.slice(0, 70))} is not a policy name: 1-63 of a-z 0-9 . _ - (starting and ending with a letter or digit)`,
    );
  return name;
}

function ms(d: Duration | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

function enumIn<T extends number>(v: T, allowed: readonly T[], field: string, names: string): T {
  if (!allowed.includes(v)) throw invalid(field, `unknown value ${v}: use ${names}`);
  return v;
}

export function validatePolicy(p: DetectionPolicy | undefined, maxCommentLength = 1024): PolicySpec {
  if (!p) throw invalid('policy', 'a policy is required');
  const name = checkPolicyName(p.name, 'policy.name');
  const m = p.match;
  const direction =
    !m || m.direction === Direction.DIRECTION_UNSPECIFIED
      ? Direction.DIRECTION_INGRESS
      : enumIn(m.direction, [Direction.DIRECTION_INGRESS, Direction.DIRECTION_EGRESS], 'policy.match.direction', 'ingress or egress');
  const protocol =
    !m || m.protocol === PolicyProtocol.POLICY_PROTOCOL_UNSPECIFIED
      ? PolicyProtocol.POLICY_PROTOCOL_ANY
      : enumIn(
          m.protocol,
          [
            PolicyProtocol.POLICY_PROTOCOL_ANY,
            PolicyProtocol.POLICY_PROTOCOL_TCP,
            PolicyProtocol.POLICY_PROTOCOL_UDP,
            PolicyProtocol.POLICY_PROTOCOL_ICMP,
          ],
          'policy.match.protocol',
          'any, tcp, udp or icmp',
        );
  const ports: [number, number][] = [];
  (m?.ports ?? []).forEach((r, i) => {
    const field = `policy.match.ports[${i}]`;
    const last = r.last || r.first;
    if (r.first < 1 || r.first > 65535) throw invalid(field, `port ${r.first} is not 1..65535`);
    if (last > 65535) throw invalid(field, `port ${last} is not 1..65535`);
    if (last < r.first) throw invalid(field, `range ${r.first}-${last} ends before it starts`);
    ports.push([r.first, last]);
  });
  if (ports.length > MAX_PORT_RANGES) throw invalid('policy.match.ports', `at most ${MAX_PORT_RANGES} port ranges, got ${ports.length}`);
  if (ports.length > 0 && protocol !== PolicyProtocol.POLICY_PROTOCOL_TCP && protocol !== PolicyProtocol.POLICY_PROTOCOL_UDP)
    throw invalid('policy.match.ports', 'ports need protocol tcp or udp');
  const tcpSynOnly = m?.tcpSynOnly ?? false;
  if (tcpSynOnly && protocol !== PolicyProtocol.POLICY_PROTOCOL_TCP) throw invalid('policy.match.tcp_syn_only', 'needs protocol tcp');

  const t = p.threshold;
  const packetsPerSecond = t?.packetsPerSecond ?? 0n;
  const bytesPerSecond = t?.bytesPerSecond ?? 0n;
  if (packetsPerSecond === 0n && bytesPerSecond === 0n)
    throw invalid('policy.threshold', 'set packets_per_second or bytes_per_second above 0 (a threshold of 0 would ban every source)');
  const windowMs = ms(t?.window) ?? 1000;
  if (windowMs < 100 || windowMs > 3_600_000) throw invalid('policy.threshold.window', `${windowMs}ms is not within 100ms..1h`);
  if ((packetsPerSecond * BigInt(windowMs)) / 1000n < 1n && bytesPerSecond === 0n)
    throw invalid(
      'policy.threshold.packets_per_second',
      `${packetsPerSecond}/s over ${windowMs}ms is under one packet: lengthen the window`,
    );

  const grouping =
    p.grouping === SourceGrouping.SOURCE_GROUPING_UNSPECIFIED
      ? SourceGrouping.SOURCE_GROUPING_ADDRESS
      : enumIn(
          p.grouping,
          [SourceGrouping.SOURCE_GROUPING_ADDRESS, SourceGrouping.SOURCE_GROUPING_NETWORK],
          'policy.grouping',
          'address or network',
        );

  const r = p.response;
  const banMs = ms(r?.duration) ?? 600_000;
  if (banMs < windowMs) throw invalid('policy.response.duration', `a ban of ${banMs}ms is shorter than the window (${windowMs}ms)`);
  if (banMs > 30 * DAY_MS) throw invalid('policy.response.duration', 'at most 30 days');
  const escalationFactor = r?.escalationFactor || 2;
  if (!(escalationFactor >= 1 && escalationFactor <= 100)) throw invalid('policy.response.escalation_factor', 'must be 1..100');
  const maxBanMs = ms(r?.maxDuration) ?? Math.max(DAY_MS, banMs);
  if (maxBanMs < banMs || maxBanMs > 365 * DAY_MS)
    throw invalid('policy.response.max_duration', 'must be at least duration and at most 365 days');
  const jitter = r?.jitter ?? 0.1;
  if (!(jitter >= 0 && jitter <= 0.5)) throw invalid('policy.response.jitter', 'must be 0..0.5');

  const scope =
    p.scope === BanScope.BAN_SCOPE_UNSPECIFIED
      ? BanScope.BAN_SCOPE_FLEET
      : enumIn(
          p.scope,
          [BanScope.BAN_SCOPE_FLEET, BanScope.BAN_SCOPE_NODE, BanScope.BAN_SCOPE_SELECTOR],
          'policy.scope',
          'fleet, node or selector',
        );
  const scopeSelector = validateSelector(p.scopeSelector, 'policy.scope_selector');
  if (scope === BanScope.BAN_SCOPE_SELECTOR && Object.keys(scopeSelector).length === 0)
    throw invalid('policy.scope_selector', 'a selector scope needs labels');
  const mode =
    p.mode === Mode.MODE_UNSPECIFIED
      ? Mode.MODE_ENFORCE
      : enumIn(p.mode, [Mode.MODE_ENFORCE, Mode.MODE_MONITOR], 'policy.mode', 'enforce or monitor');
  const nodeSelector = validateSelector(p.nodeSelector, 'policy.node_selector');
  const maxBansPerSecond = p.maxBansPerSecond || 50;
  if (maxBansPerSecond > 10_000) throw invalid('policy.max_bans_per_second', 'at most 10000');
  const mergeThreshold = p.mergeThreshold ?? 0;
  if (mergeThreshold !== 0) {
    if (mergeThreshold < 2 || mergeThreshold > MAX_MERGE_THRESHOLD)
      throw invalid('policy.merge_threshold', `${mergeThreshold} is not 2..${MAX_MERGE_THRESHOLD} (0: never merge)`);
    if (grouping !== SourceGrouping.SOURCE_GROUPING_ADDRESS)
      throw invalid('policy.merge_threshold', 'merging needs grouping address (a network grouping bans the network already)');
  }
  if (p.comment.length > maxCommentLength) throw invalid('policy.comment', `at most ${maxCommentLength} characters`);
  return {
    name,
    direction,
    protocol,
    ports,
    tcpSynOnly,
    packetsPerSecond,
    bytesPerSecond,
    windowMs,
    grouping,
    banMs,
    escalationFactor,
    maxBanMs,
    jitter,
    scope,
    scopeSelector,
    mode,
    nodeSelector,
    nodeSelectorKey: selectorKey(nodeSelector),
    maxBansPerSecond,
    mergeThreshold,
    comment: p.comment,
  };
}

const dur = (msv: number): Duration => ({ seconds: BigInt(Math.floor(msv / 1000)), nanos: (msv % 1000) * 1_000_000 });

/** The API form of a stored spec (output fields added by the caller). */
export function policyOfSpec(s: PolicySpec): DetectionPolicy {
  return {
    name: s.name,
    match: {
      direction: s.direction,
      protocol: s.protocol,
      ports: s.ports.map(([first, last]) => ({ first, last })),
      tcpSynOnly: s.tcpSynOnly,
    },
    threshold: { packetsPerSecond: s.packetsPerSecond, bytesPerSecond: s.bytesPerSecond, window: dur(s.windowMs) },
    grouping: s.grouping,
    response: { duration: dur(s.banMs), escalationFactor: s.escalationFactor, maxDuration: dur(s.maxBanMs), jitter: s.jitter },
    scope: s.scope,
    scopeSelector: { ...s.scopeSelector },
    mode: s.mode,
    nodeSelector: { ...s.nodeSelector },
    maxBansPerSecond: s.maxBansPerSecond,
    mergeThreshold: s.mergeThreshold ?? 0,
    comment: s.comment,
    createTime: undefined,
    revision: 0n,
    createdBy: '',
    detections: 0n,
    bans: 0n,
    exempted: 0n,
  };
}

/** JSON for the store (bigints as strings). */
export function specToJson(s: PolicySpec): string {
  return JSON.stringify(s, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
}

export function specFromJson(j: Record<string, unknown>): PolicySpec {
  return {
    ...(j as unknown as PolicySpec),
    packetsPerSecond: BigInt(j.packetsPerSecond as string),
    bytesPerSecond: BigInt(j.bytesPerSecond as string),
  };
}
