// TypeScript mirror of bpf/include/fw_policy_abi.h (detection policies,
// issue 18): constants, layouts and map names, merged into abi.ts's tables
// (ABI_ENUMS, LAYOUT, MAP) so test/dataplane/abi.test.ts checks them with
// the rest. Encoders and decoders are in policy-maps.ts.

export const FW_POL_MAX = 8;
export const FW_POL_PORT_RANGES = 8;
/** Count-min rows per policy, cells per row (2^FW_POL_WIDTH_BITS), cells in fw_pol_cms (every slot's rows: FW_POL_MAX values of one slot's sketch each). */
export const FW_POL_ROWS = 4;
export const FW_POL_WIDTH_BITS = 14;
export const FW_POL_WIDTH = 1 << FW_POL_WIDTH_BITS;
export const FW_POL_CELLS = FW_POL_MAX * FW_POL_ROWS * FW_POL_WIDTH;
/** A cell's tag: (u32)epoch + policy id * this (epoch = (jiffies * window_mul) >> window_shift, ABI 14). */
export const FW_POL_TAG_MUL = 0x9e3779b1;
/** fw_pol_cell.packets: a group of the cell was reported in its window. */
export const FW_POL_REPORTED = 0x80000000;
export const FW_POL_HITS = 4096;
export const FW_POL_PROTO = { any: 0, icmp: 1, tcp: 6, udp: 17, icmp6: 58 } as const;
export const FW_POL_F_SYN_ONLY = 1;
/** fw_policy_set.class_mask bits: the protocols some policy of a direction counts (the programs' first test). */
export const FW_POL_CLASS = { icmp: 1, tcp: 2, udp: 4, other: 8 } as const;
/** fw_policy_set.class_pols' second index (ABI 13): the class's bit number. */
export const FW_POL_CIDX = { icmp: 0, tcp: 1, udp: 2, other: 3 } as const;
/** fw_policy_set.port_pols: one byte of slots per destination port and direction. */
export const FW_POL_PORTS = 65536;

export const POLICY_ENUMS: Readonly<Record<string, number>> = {
  FW_POL_MAX,
  FW_POL_PORT_RANGES,
  FW_POL_ROWS,
  FW_POL_WIDTH_BITS,
  FW_POL_WIDTH,
  FW_POL_CELLS,
  FW_POL_TAG_MUL,
  FW_POL_REPORTED,
  FW_POL_HITS,
  FW_POL_PROTO_ANY: FW_POL_PROTO.any,
  FW_POL_PROTO_ICMP: FW_POL_PROTO.icmp,
  FW_POL_PROTO_TCP: FW_POL_PROTO.tcp,
  FW_POL_PROTO_UDP: FW_POL_PROTO.udp,
  FW_POL_PROTO_ICMP6: FW_POL_PROTO.icmp6,
  FW_POL_F_SYN_ONLY,
  FW_POL_CLASS_ICMP: FW_POL_CLASS.icmp,
  FW_POL_CLASS_TCP: FW_POL_CLASS.tcp,
  FW_POL_CLASS_UDP: FW_POL_CLASS.udp,
  FW_POL_CLASS_OTHER: FW_POL_CLASS.other,
  FW_POL_CIDX_ICMP: FW_POL_CIDX.icmp,
  FW_POL_CIDX_TCP: FW_POL_CIDX.tcp,
  FW_POL_CIDX_UDP: FW_POL_CIDX.udp,
  FW_POL_CIDX_OTHER: FW_POL_CIDX.other,
};

export const POLICY_LAYOUT = {
  fw_policy: {
    size: 72,
    fields: {
      id: 0,
      direction: 4,
      proto: 5,
      flags: 6,
      nports: 7,
      v4_len: 8,
      v6_len: 9,
      window_shift: 10,
      pad: 11,
      window_mul: 12,
      window_ns: 16,
      limit_packets: 24,
      limit_bytes: 32,
      port_lo: 40,
      port_hi: 56,
    },
  },
  fw_pol_seed: { size: 24, fields: { a: 0, b: 8, c: 16 } },
  fw_policy_set: {
    size: 24 + 24 * FW_POL_ROWS + 72 * FW_POL_MAX + 2 * FW_POL_PORTS,
    fields: {
      dir_mask: 0,
      count: 4,
      class_mask: 6,
      l4_mask: 8,
      syn_only: 10,
      noport: 12,
      class_pols: 14,
      pad: 22,
      seed: 24,
      p: 24 + 24 * FW_POL_ROWS,
      port_pols: 24 + 24 * FW_POL_ROWS + 72 * FW_POL_MAX,
    },
  },
  fw_pol_cell: { size: 16, fields: { tag: 0, packets: 4, bytes: 8 } },
  fw_pol_sketch: { size: 16 * FW_POL_ROWS * FW_POL_WIDTH, fields: { c: 0 } },
  fw_pol_key: { size: 24, fields: { policy: 0, family: 4, pad: 5, addr: 8 } },
  fw_pol_hit: { size: 64, fields: { seq: 0, key: 8, packets: 32, bytes: 40, elapsed_ns: 48, at_ns: 56 } },
  fw_pol_stat: { size: 192, fields: { head: 0, pad: 8, margin_packets: 64, margin_bytes: 128 } },
} as const;

export const POLICY_MAP = {
  POL_CFG: 'fw_pol_cfg',
  POL_CMS: 'fw_pol_cms',
  POL_HITS: 'fw_pol_hits',
  POL_STAT: 'fw_pol_stat',
} as const;
