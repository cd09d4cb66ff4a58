// One detection policy fixture for the tests and the bench (issue 18): a
// valid enforce policy - ingress TCP/22 SYN, 20 packets/s over a 1 s window
// per /32, a 60 s ban doubling up to 600 s, no jitter, fleet-wide, every
// node - with any field overridden. match, threshold and response are merged
// one level deep (a test that changes the protocol keeps the direction);
// DetectionPolicy.fromPartial fills the rest (the server-set fields: zero).
import { BanScope, DetectionPolicy, PolicyProtocol, SourceGrouping } from '../../proto/gen/fleetwall/v1/policy.js';
import { Direction, Mode } from '../../proto/gen/fleetwall/v1/rule.js';
import type { KernelPolicy } from '../../node-agent/src/datapath/policy-maps.js';
import type { Detection } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { parseAddress } from '../../common/src/cidr.js';

type Partial1<T> = { [K in keyof T]?: T[K] };

export interface PolicyOverrides extends Omit<Partial<DetectionPolicy>, 'match' | 'threshold' | 'response'> {
  readonly name: string;
  readonly match?: Partial1<NonNullable<DetectionPolicy['match']>>;
  readonly threshold?: Partial1<NonNullable<DetectionPolicy['threshold']>>;
  readonly response?: Partial1<NonNullable<DetectionPolicy['response']>>;
}

/** A duration of `s` seconds (fractions to nanos). */
export const sec = (s: number) => ({ seconds: BigInt(Math.floor(s)), nanos: Math.round((s % 1) * 1e9) });

function base() {
  return {
    match: {
      direction: Direction.DIRECTION_INGRESS,
      protocol: PolicyProtocol.POLICY_PROTOCOL_TCP,
      ports: [{ first: 22, last: 0 }],
      tcpSynOnly: true,
    } as NonNullable<DetectionPolicy['match']>,
    threshold: { packetsPerSecond: 20n, bytesPerSecond: 0n, window: sec(1) } as NonNullable<DetectionPolicy['threshold']>,
    grouping: SourceGrouping.SOURCE_GROUPING_ADDRESS,
    response: { duration: sec(60), escalationFactor: 2, maxDuration: sec(600), jitter: 0 } as NonNullable<DetectionPolicy['response']>,
    scope: BanScope.BAN_SCOPE_FLEET,
    mode: Mode.MODE_ENFORCE,
  };
}

export function detectionPolicy(p: PolicyOverrides): DetectionPolicy {
  const b = base();
  return DetectionPolicy.fromPartial({
    ...b,
    ...p,
    match: { ...b.match, ...p.match },
    threshold: { ...b.threshold, ...p.threshold },
    response: { ...b.response, ...p.response },
  });
}

/**
 * One policy as the kernel counts it (the datapath's KernelPolicy), for the
 * policy kernel tests and bench:respond: id 1, ingress UDP to port 9, per
 * /32 (/128), a 1 s window, 5 packets, no byte limit, any field overridden.
 */
export function kernelPolicy(p: Partial<KernelPolicy> = {}): KernelPolicy {
  return {
    id: 1,
    direction: 'ingress',
    protocol: 'udp',
    synOnly: false,
    ports: [[9, 9]],
    v4Len: 32,
    v6Len: 128,
    windowNs: 1_000_000_000n,
    limitPackets: 5n,
    limitBytes: 0n,
    ...p,
  };
}

/**
 * A Detection as an agent reports it over Sync (policy `name`, id
 * `policyId`, source `address` as a /32 or /128): 100 packets, 6,000 bytes
 * in a 1 s window, enforced and banned locally, any field overridden.
 */
export function detectionReport(policyId: bigint, name: string, address: string, o: Partial<Detection> = {}): Detection {
  return {
    kind: 'detection',
    policyId,
    policy: name,
    address: Buffer.from(parseAddress(address).bytes),
    prefixLength: address.includes(':') ? 128 : 32,
    packets: 100n,
    bytes: 6000n,
    window: sec(1),
    packetsPerSecond: 100,
    bytesPerSecond: 6000,
    detectTime: new Date(),
    monitor: false,
    bannedLocally: true,
    ...o,
  };
}
