// A drop event as the control plane keeps it: the agent's record with the
// node it came from, its addresses as bytes (filters compare bytes) and as
// text, and this process's sequence number. Converted to the public
// DropEvent once per event (shared by every watcher).

import { formatAddress } from '../../../common/src/cidr.js';
import type { AgentDropEvent, DropEvent } from '../../../proto/gen/fleetwall/v1/event.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';

export interface InspectEvent {
  /** This process's sequence (increases by one per event received or fanned in). */
  seq: bigint;
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

/** From an agent's record (the stream says the node). */
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
    kind: e.kind,
    sequence: 0n,
  };
  return fromParts(wire, e.source, e.destination);
}

/** From the public form (events fanned in from another process). */
export function fromWire(w: DropEvent, src: Uint8Array, dst: Uint8Array): InspectEvent {
  return fromParts(w, src, dst);
}

function fromParts(wire: DropEvent, src: Uint8Array, dst: Uint8Array): InspectEvent {
  return {
    seq: 0n,
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
