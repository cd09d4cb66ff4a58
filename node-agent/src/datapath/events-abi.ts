// TypeScript mirror of bpf/include/fw_events_abi.h (sampled drop events):
// constants, struct layouts, map names, and the decoder of one ring record.
// Merged into abi.ts's tables, so test/dataplane/abi.test.ts checks every
// size, offset, constant and name here against the C header too.

export const FW_EV_KIND_DROP = 1;
export const FW_EV_NO_SLOT = 0xffffffff;
export const FW_EV_SNAP_MAX = 256;
export const FW_EV_TICK_SHIFT = 20;
export const FW_EV_MILLI = 1000;
export const FW_EV_CLOCK_QUIET = 4;
export const FW_EV_CLOCK_EVERY = 128;
export const FW_EV_F_ENABLED = 1;
export const FW_EV_F_NODE = 2;

export const EV_ENUMS = {
  FW_EV_KIND_DROP,
  FW_EV_NO_SLOT,
  FW_EV_SNAP_MAX,
  FW_EV_TICK_SHIFT,
  FW_EV_MILLI,
  FW_EV_CLOCK_QUIET,
  FW_EV_CLOCK_EVERY,
  FW_EV_F_ENABLED,
  FW_EV_F_NODE,
} as const;

export const EV_MAP = { EVENTS: 'fw_events', EV_CFG: 'fw_ev_cfg', EV_CPU: 'fw_ev_cpu' } as const;

export const EV_LAYOUT = {
  fw_ev_cfg: {
    size: 32,
    fields: { flags: 0, snap_len: 4, refill: 8, burst: 12, full_ticks: 16, node_refill: 20, node_burst: 24, node_full_ticks: 28 },
  },
  fw_ev_state: { size: 16, fields: { last: 0, tokens: 4, mark: 8, lost: 12 } },
  /** fw_rule_cnt's value: the counter (struct fw_counter) then the rule's budget on that row. */
  fw_rule_row: { size: 32, fields: { c: 0, ev: 16 } },
  fw_ev_cpu: { size: 64, fields: { last: 0, tokens: 4, drops: 8, dflt: 16, pad2: 32 } },
  fw_event: {
    size: 72,
    fields: {
      time_ns: 0,
      kind: 8,
      verdict: 10,
      direction: 11,
      ifindex: 12,
      slot: 16,
      weight: 20,
      pkt_len: 24,
      cap_len: 28,
      family: 30,
      ip_proto: 31,
      sport: 32,
      dport: 34,
      tcp_flags: 36,
      pad: 37,
      saddr: 40,
      daddr: 56,
    },
  },
} as const;

/** What the kernel budget is set to (fw_ev_cfg), in the operator's units. */
export interface EventSettings {
  /** Events written at all (false: the drop path only reads the flag). */
  readonly enabled: boolean;
  /** Events per second per rule (split over the CPU rows). */
  readonly ratePerSecond: number;
  /** Events a quiet rule may write at once (split over the CPU rows, at least 1 each). */
  readonly burst: number;
  /** Packet bytes copied into each event (0..FW_EV_SNAP_MAX). */
  readonly snapLen: number;
  /**
   * Events per second the node writes at most, whatever rules are hit (split
   * over the CPU rows; checked before the rule's budget). Unset: no node bound.
   */
  readonly nodeRatePerSecond?: number;
  /** Events the node may write at once (split over the CPU rows); default: nodeRatePerSecond. */
  readonly nodeBurst?: number;
}

/** Thousandths of a token per tick per row for `perSecond`, and the burst per row in thousandths. */
function bucket(perSecond: number, burst: number, rows: number): { refill: number; burst: number; fullTicks: number } {
  // thousandths of a token per tick (2^20 ns) per row
  const refill = Math.max(1, Math.round((perSecond * FW_EV_MILLI * 2 ** FW_EV_TICK_SHIFT) / 1e9 / rows));
  const b = Math.max(FW_EV_MILLI, Math.round((burst * FW_EV_MILLI) / rows));
  return {
    refill: Math.min(refill, 0xffffffff),
    burst: Math.min(b, 0xffffffff),
    fullTicks: Math.min(0xffffffff, Math.ceil(b / refill) + 1),
  };
}

/** fw_ev_cfg for `s` with the budgets split over `cpuRows` rows. */
export function encodeEventCfg(s: EventSettings, cpuRows: number): Buffer {
  const F = EV_LAYOUT.fw_ev_cfg.fields;
  const b = Buffer.alloc(EV_LAYOUT.fw_ev_cfg.size);
  const rows = Math.max(1, cpuRows);
  const rule = bucket(s.ratePerSecond, s.burst, rows);
  const node = s.nodeRatePerSecond !== undefined;
  b.writeUInt32LE((s.enabled ? FW_EV_F_ENABLED : 0) | (node ? FW_EV_F_NODE : 0), F.flags);
  b.writeUInt32LE(Math.max(0, Math.min(FW_EV_SNAP_MAX, Math.trunc(s.snapLen))), F.snap_len);
  b.writeUInt32LE(rule.refill >>> 0, F.refill);
  b.writeUInt32LE(rule.burst >>> 0, F.burst);
  b.writeUInt32LE(rule.fullTicks >>> 0, F.full_ticks);
  if (node) {
    const n = bucket(s.nodeRatePerSecond!, s.nodeBurst ?? s.nodeRatePerSecond!, rows);
    b.writeUInt32LE(n.refill >>> 0, F.node_refill);
    b.writeUInt32LE(n.burst >>> 0, F.node_burst);
    b.writeUInt32LE(n.fullTicks >>> 0, F.node_full_ticks);
  }
  return b;
}

/** Bytes of a record before its packet bytes. */
export const EVENT_HEADER = EV_LAYOUT.fw_event.size;

/** One fw_event as an object (tests, tools; the agent decodes into columns: events/event-queue.ts). */
export interface EventRecord {
  timeNs: bigint;
  kind: number;
  verdict: number;
  direction: number;
  ifindex: number;
  slot: number;
  weight: number;
  pktLen: number;
  family: number;
  ipProto: number;
  sport: number;
  dport: number;
  tcpFlags: number;
  /** 4 or 16 bytes, network order. */
  saddr: Buffer;
  daddr: Buffer;
  /** The packet's first bytes (cap_len of them), copied. */
  packet: Buffer;
}

export function decodeEventRecord(buf: Buffer, off: number, len: number): EventRecord {
  const F = EV_LAYOUT.fw_event.fields;
  const family = buf[off + F.family]!;
  const alen = family === 6 ? 16 : 4;
  const cap = Math.min(buf.readUInt16LE(off + F.cap_len), Math.max(0, len - EVENT_HEADER));
  return {
    timeNs: buf.readBigUInt64LE(off + F.time_ns),
    kind: buf.readUInt16LE(off + F.kind),
    verdict: buf[off + F.verdict]!,
    direction: buf[off + F.direction]!,
    ifindex: buf.readUInt32LE(off + F.ifindex),
    slot: buf.readUInt32LE(off + F.slot),
    weight: buf.readUInt32LE(off + F.weight),
    pktLen: buf.readUInt32LE(off + F.pkt_len),
    family,
    ipProto: buf[off + F.ip_proto]!,
    sport: buf.readUInt16LE(off + F.sport),
    dport: buf.readUInt16LE(off + F.dport),
    tcpFlags: buf[off + F.tcp_flags]!,
    saddr: Buffer.from(buf.subarray(off + F.saddr, off + F.saddr + alen)),
    daddr: Buffer.from(buf.subarray(off + F.daddr, off + F.daddr + alen)),
    packet: Buffer.from(buf.subarray(off + EVENT_HEADER, off + EVENT_HEADER + cap)),
  };
}
