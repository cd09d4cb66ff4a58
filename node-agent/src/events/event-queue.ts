// The agent's bounded queue of sampled drop events: records from the kernel
// ring decoded straight into reused columns (typed arrays, no object per
// event), the rule id resolved from the counter slot as the event is read
// (a slot is reused by another rule later). When full, the oldest event is
// dropped and counted. take() builds the messages for one Sync batch.

import type { AgentDropEvent } from '../../../proto/gen/fleetwall/v1/event.js';
import { EventKind, EventVerdict } from '../../../proto/gen/fleetwall/v1/event.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import { EVENT_HEADER, EV_LAYOUT, FW_EV_NO_SLOT, FW_EV_SNAP_MAX } from '../datapath/events-abi.js';

const F = EV_LAYOUT.fw_event.fields;

/** Maps what a record names to what the wire carries. */
export interface EventResolver {
  /** The rule owning a counter slot now, or undefined (then the event is dropped as nobody's). */
  ruleOf(slot: number): bigint | undefined;
  /** An interface's name. */
  ifname(ifindex: number): string;
  /** CLOCK_MONOTONIC ns -> CLOCK_REALTIME µs since the epoch. */
  unixMicros(monoNs: bigint): number;
}

export class EventQueue {
  readonly capacity: number;
  private head = 0;
  private size = 0;
  private readonly timeUs: Float64Array;
  private readonly ruleId: BigUint64Array;
  private readonly u32: Uint32Array; // ifindex, weight, pktLen per event
  private readonly u16: Uint16Array; // sport, dport, capLen
  private readonly u8: Uint8Array; // kind, verdict, direction, family, proto, tcpFlags
  private readonly addr: Uint8Array; // saddr[16], daddr[16]
  private packets: Uint8Array;
  private snap = 0;
  /** Totals since start (metrics). */
  readonly stats = { read: 0, dropped: 0, orphaned: 0, taken: 0 };
  /** Dropped since the last take() (the batch reports it). */
  private droppedSinceTake = 0;

  constructor(capacity: number, snapLen = 0) {
    this.capacity = Math.max(1, capacity);
    const n = this.capacity;
    this.timeUs = new Float64Array(n);
    this.ruleId = new BigUint64Array(n);
    this.u32 = new Uint32Array(n * 3);
    this.u16 = new Uint16Array(n * 3);
    this.u8 = new Uint8Array(n * 6);
    this.addr = new Uint8Array(n * 32);
    this.packets = new Uint8Array(0);
    this.setSnap(snapLen);
  }

  get length(): number {
    return this.size;
  }

  /** Packet bytes kept per event (0: none; the storage is allocated only for a snap length). */
  setSnap(snapLen: number): void {
    const s = Math.max(0, Math.min(FW_EV_SNAP_MAX, snapLen));
    if (s === this.snap) return;
    this.snap = s;
    this.packets = new Uint8Array(this.capacity * s);
  }

  /** Decodes one ring record (buf[off, off + len)) into the next row; the oldest row goes when full. */
  push(buf: Buffer, off: number, len: number, r: EventResolver): void {
    this.stats.read++;
    if (len < EVENT_HEADER) return;
    const slot = buf.readUInt32LE(off + F.slot);
    const id = slot === FW_EV_NO_SLOT ? 0n : r.ruleOf(slot);
    if (id === undefined) {
      this.stats.orphaned++;
      return;
    }
    if (this.size === this.capacity) {
      this.head = (this.head + 1) % this.capacity;
      this.size--;
      this.stats.dropped++;
      this.droppedSinceTake++;
    }
    const i = (this.head + this.size) % this.capacity;
    this.size++;
    this.timeUs[i] = r.unixMicros(buf.readBigUInt64LE(off + F.time_ns));
    this.ruleId[i] = id;
    this.u32[i * 3] = buf.readUInt32LE(off + F.ifindex);
    this.u32[i * 3 + 1] = buf.readUInt32LE(off + F.weight);
    this.u32[i * 3 + 2] = buf.readUInt32LE(off + F.pkt_len);
    this.u16[i * 3] = buf.readUInt16LE(off + F.sport);
    this.u16[i * 3 + 1] = buf.readUInt16LE(off + F.dport);
    const cap = Math.min(buf.readUInt16LE(off + F.cap_len), len - EVENT_HEADER, this.snap);
    this.u16[i * 3 + 2] = cap;
    this.u8[i * 6] = buf.readUInt16LE(off + F.kind);
    this.u8[i * 6 + 1] = buf[off + F.verdict]!;
    this.u8[i * 6 + 2] = buf[off + F.direction]!;
    this.u8[i * 6 + 3] = buf[off + F.family]!;
    this.u8[i * 6 + 4] = buf[off + F.ip_proto]!;
    this.u8[i * 6 + 5] = buf[off + F.tcp_flags]!;
    this.addr.set(buf.subarray(off + F.saddr, off + F.saddr + 32), i * 32);
    if (cap > 0) this.packets.set(buf.subarray(off + EVENT_HEADER, off + EVENT_HEADER + cap), i * this.snap);
  }

  /** Removes up to `max` oldest events as wire messages; `dropped`: queue drops since the previous take. */
  take(max: number, r: Pick<EventResolver, 'ifname'>): { events: AgentDropEvent[]; dropped: number } {
    const n = Math.min(max, this.size);
    const events: AgentDropEvent[] = new Array(n);
    for (let k = 0; k < n; k++) {
      const i = (this.head + k) % this.capacity;
      const alen = this.u8[i * 6 + 3] === 6 ? 16 : 4;
      const cap = this.u16[i * 3 + 2]!;
      events[k] = {
        timeUnixNano: BigInt(Math.round(this.timeUs[i]!)) * 1000n,
        ruleId: this.ruleId[i]!,
        verdict: this.u8[i * 6 + 1] === 2 ? EventVerdict.EVENT_VERDICT_WOULD_DROP : EventVerdict.EVENT_VERDICT_DROP,
        direction: this.u8[i * 6 + 2] === 1 ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS,
        source: Buffer.from(this.addr.subarray(i * 32, i * 32 + alen)),
        destination: Buffer.from(this.addr.subarray(i * 32 + 16, i * 32 + 16 + alen)),
        protocol: this.u8[i * 6 + 4]!,
        sourcePort: this.u16[i * 3]!,
        destinationPort: this.u16[i * 3 + 1]!,
        tcpFlags: this.u8[i * 6 + 5]!,
        length: this.u32[i * 3 + 2]!,
        weight: BigInt(this.u32[i * 3 + 1]!),
        interface: r.ifname(this.u32[i * 3]!),
        packet: cap > 0 ? Buffer.from(this.packets.subarray(i * this.snap, i * this.snap + cap)) : Buffer.alloc(0),
        kind: this.u8[i * 6] === 1 ? EventKind.EVENT_KIND_DROP : EventKind.EVENT_KIND_UNSPECIFIED,
      };
    }
    this.head = (this.head + n) % this.capacity;
    this.size -= n;
    this.stats.taken += n;
    const dropped = this.droppedSinceTake;
    this.droppedSinceTake = 0;
    return { events, dropped };
  }
}
