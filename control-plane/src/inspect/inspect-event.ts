// An event as the control plane keeps it: a drop (the agent's record with
// the node it came from), a detection an agent reported, or a ban's outcome;
// its addresses as bytes (filters compare bytes) and as text, and this
// process's sequence number. Converted to the public DropEvent once per
// event (shared by every watcher).

import { formatAddress, formatPrefix, maskBytes, type Prefix } from '../../../common/src/cidr.js';
import type { Detection } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { type AgentDropEvent, BanOutcome, type DropEvent, EventKind, EventVerdict } from '../../../proto/gen/fleetwall/v1/event.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';

export interface InspectEvent {
  /** This process's sequence (increases by one per event received or fanned in). */
  seq: bigint;
  /** EVENT_KIND_DROP for drops (also those of kind UNSPECIFIED), DETECTION, BAN. */
  readonly kind: EventKind;
  /** Detections and bans: the policy's name; '' for drops. */
  readonly policy: string;
  /** Bans: the outcome; UNSPECIFIED otherwise. */
  readonly outcome: BanOutcome;
  readonly timeMs: number;
  readonly node: string;
  readonly ruleId: bigint;
  readonly direction: Direction;
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
  readonly proto: number;
  readonly sport: number;
  readonly dport: number;
  readonly weight: bigint;
  /** The public form (its sequence set when the event is stored). */
  readonly wire: DropEvent;
}

function addrText(b: Uint8Array): string {
  if (b.length === 4) return formatAddress({ family: 4, bytes: b });
  if (b.length === 16) return formatAddress({ family: 6, bytes: b });
  return '';
}

/** The address bytes of a text address ('' or unparsable: none). */
function bytesOf(prefix: Prefix | undefined): Uint8Array {
  return prefix ? prefix.bytes : new Uint8Array(0);
}

/** From an agent's record (the stream says the node). Always a drop: an agent's batch carries nothing else. */
export function fromAgent(node: string, e: AgentDropEvent): InspectEvent {
  const timeMs = Number(e.timeUnixNano / 1_000_000n);
  const wire: DropEvent = {
    time: new Date(timeMs),
    nodeName: node,
    ruleId: e.ruleId,
    verdict: e.verdict,
    direction: e.direction,
    source: addrText(e.source),
    destination: addrText(e.destination),
    protocol: e.protocol,
    sourcePort: e.sourcePort,
    destinationPort: e.destinationPort,
    tcpFlags: e.tcpFlags,
    length: e.length,
    weight: e.weight,
    interface: e.interface,
    packet: e.packet,
    kind: EventKind.EVENT_KIND_DROP,
    sequence: 0n,
    detection: undefined,
    ban: undefined,
  };
  return fromParts(wire, e.source, e.destination);
}

/** From the public form (events fanned in from another process). */
export function fromWire(w: DropEvent, src: Uint8Array, dst: Uint8Array): InspectEvent {
  return fromParts(w, src, dst);
}

/** The common fields of a detection or ban event (no packet). */
function nonPacket(kind: EventKind, timeMs: number, node: string, direction: Direction, group: Prefix): DropEvent {
  const addr = formatAddress(group);
  const egress = direction === Direction.DIRECTION_EGRESS;
  return {
    time: new Date(timeMs),
    nodeName: node,
    ruleId: 0n,
    verdict: EventVerdict.EVENT_VERDICT_UNSPECIFIED,
    direction,
    source: egress ? '' : addr,
    destination: egress ? addr : '',
    protocol: 0,
    sourcePort: 0,
    destinationPort: 0,
    tcpFlags: 0,
    length: 0,
    weight: 0n,
    interface: '',
    packet: Buffer.alloc(0),
    kind,
    sequence: 0n,
    detection: undefined,
    ban: undefined,
  };
}

function placed(wire: DropEvent, group: Prefix): InspectEvent {
  const egress = wire.direction === Direction.DIRECTION_EGRESS;
  return fromParts(wire, egress ? new Uint8Array(0) : bytesOf(group), egress ? bytesOf(group) : new Uint8Array(0));
}

/**
 * A detection `node` reported for a policy this process knows (its name and
 * direction are the control plane's, not the agent's). Undefined when the
 * address is not a valid group.
 */
export function fromDetection(
  node: string,
  d: Detection,
  policy: string,
  direction: Direction,
  nowMs = Date.now(),
): InspectEvent | undefined {
  const family = d.address.length === 4 ? 4 : d.address.length === 16 ? 6 : 0;
  if (family === 0 || d.prefixLength > d.address.length * 8) return undefined;
  const group: Prefix = { family, bytes: maskBytes(new Uint8Array(d.address), d.prefixLength), len: d.prefixLength };
  const timeMs = d.detectTime ? d.detectTime.getTime() : nowMs;
  const wire = nonPacket(EventKind.EVENT_KIND_DETECTION, Number.isFinite(timeMs) ? timeMs : nowMs, node, direction, group);
  wire.detection = {
    policy,
    policyId: d.policyId,
    source: formatPrefix(group),
    packets: d.packets,
    bytes: d.bytes,
    window: d.window,
    packetsPerSecond: d.packetsPerSecond,
    bytesPerSecond: d.bytesPerSecond,
    monitor: d.monitor,
    bannedLocally: d.bannedLocally,
  };
  return placed(wire, group);
}

/** What the ban writer did with a detection (respond/ban-writer.ts's BanEvent, in the terms of the wire). */
/** A ban outcome's name (the ban writer's, the HTTP filter's) -> its wire value. */
export const BAN_OUTCOMES: Readonly<Record<string, BanOutcome>> = {
  created: BanOutcome.BAN_OUTCOME_CREATED,
  extended: BanOutcome.BAN_OUTCOME_EXTENDED,
  exempted: BanOutcome.BAN_OUTCOME_EXEMPTED,
  covered: BanOutcome.BAN_OUTCOME_COVERED,
  refused: BanOutcome.BAN_OUTCOME_REFUSED,
  merged: BanOutcome.BAN_OUTCOME_MERGED,
};

export interface BanOutcomeEvent {
  readonly policy: string;
  /** The source group, a CIDR. */
  readonly source: Prefix;
  readonly node: string;
  readonly direction: Direction;
  readonly outcome: BanOutcome;
  readonly reason: string;
  readonly ruleId: bigint | undefined;
  readonly expireTime: Date | undefined;
  readonly offences: number;
}

export function fromBan(b: BanOutcomeEvent, nowMs = Date.now()): InspectEvent {
  const wire = nonPacket(EventKind.EVENT_KIND_BAN, nowMs, b.node, b.direction, b.source);
  wire.ruleId = b.ruleId ?? 0n;
  wire.ban = {
    policy: b.policy,
    source: formatPrefix(b.source),
    outcome: b.outcome,
    reason: b.reason,
    expireTime: b.expireTime,
    offences: b.offences,
  };
  return placed(wire, b.source);
}

function kindOf(w: DropEvent): EventKind {
  if (w.kind === EventKind.EVENT_KIND_DETECTION && w.detection) return EventKind.EVENT_KIND_DETECTION;
  if (w.kind === EventKind.EVENT_KIND_BAN && w.ban) return EventKind.EVENT_KIND_BAN;
  return EventKind.EVENT_KIND_DROP;
}

function fromParts(wire: DropEvent, src: Uint8Array, dst: Uint8Array): InspectEvent {
  const kind = kindOf(wire);
  return {
    seq: 0n,
    kind,
    policy: wire.detection?.policy ?? wire.ban?.policy ?? '',
    outcome: wire.ban?.outcome ?? BanOutcome.BAN_OUTCOME_UNSPECIFIED,
    timeMs: wire.time ? wire.time.getTime() : Date.now(),
    node: wire.nodeName,
    ruleId: wire.ruleId,
    direction: wire.direction,
    src,
    dst,
    proto: wire.protocol,
    sport: wire.sourcePort,
    dport: wire.destinationPort,
    weight: wire.weight,
    wire,
  };
}

/** The address the event's rule matched: the source on ingress, the destination on egress. */
export function matchedAddress(e: InspectEvent): string {
  return e.direction === Direction.DIRECTION_EGRESS ? e.wire.destination : e.wire.source;
}
