// TypeScript mirror of bpf/include/fleetwall_abi.h: constants, struct sizes
// and field offsets, and the encoders/decoders that use them.
// test/dataplane/abi.test.ts compiles the header and compares every size,
// offset, enum value and map name below with the C side (and with the map
// key/value sizes in the committed objects): edit both together.

import type { RuleDirection } from '../../../common/src/policy.js';
import { EV_ENUMS, EV_LAYOUT, EV_MAP } from './events-abi.js';
import { POLICY_ENUMS, POLICY_LAYOUT, POLICY_MAP } from './policy-abi.js';

export const FW_ABI_VERSION = 15;
export const FW_STORE_ID_MAX = 64;
/** ABI 2's fw_meta: 56 bytes, abi_version at offset 24 (read only to name the version of old pins). */
export const FW_META_V2 = { size: 56, abiVersion: 24 } as const;
export const FW_MAX_HASH_LENS = 8;
export const FW_LEN_SLOTS = 129;
export const FW_MAX_RULE_SLOTS = 1 << 24;
export const FW_HASH_MUL = 0x9e3779b1;
export const FW_HASH_MUL4 = 0x85ebca6b;
export const FW_HASH_MUL6 = [0xc2b2ae35, 0x27d4eb2f, 0x165667b1, 0xd3a2646d] as const;
export const FW_HASH_SEED2 = 0x5bd1e995;
/** IPv4 bucket: a tag word, then FW_B4_SLOTS slot words. */
export const FW_B4_WORDS = 8;
export const FW_B4_SLOTS = 7;
export const FW_TAG4_MUL = 0xcc9e2d51;
export const FW_B6_SLOTS = 5;
/**
 * IPv4 slot word (u64, 0 = empty; ABI 15): low half = bits 0..23 the counter
 * slot, 24..25 the verdict (enum fw_slot_verdict), 26..30 the length code
 * (len - 24 for 25..32, FW_S4_CODE_SHORT for 0..24), 31 monitor; high half =
 * the masked address (lengths 0..24: with a marker bit at 31 - len). The key
 * is the code and the high half; the bucket flags (spill, overflow) are bits
 * 62, 63 of the tag word.
 */
export const FW_S4_KEY_MASK = 0xffffffff00000000n | (31n << 26n);
export const FW_S4_SLOT_MASK = (1 << 24) - 1;
export const FW_S4_VERDICT_SHIFT = 24;
export const FW_S4_CODE_SHIFT = 26;
export const FW_S4_CODE_SHORT = 31;
export const FW_S4_MONITOR = 0x80000000;
export const FW_S4_ADDR_SHIFT = 32;
export const FW_S4_SPILL = 1n << 62n;
export const FW_S4_OVF = 1n << 63n;
/**
 * IPv6 slot meta word (u64, 0 = empty): bits 0..7 the length, 8 valid, 9..10
 * the verdict, 11 monitor, 32.. the counter slot; bucket flags word: overflow, spill.
 */
export const FW_M6_LEN_MASK = 0xff;
export const FW_M6_VALID = 0x100;
export const FW_M6_VERDICT_SHIFT = 9;
export const FW_M6_MONITOR = 0x800;
export const FW_M6_SLOT_SHIFT = 32;
export const FW_B6_OVF = 1;
export const FW_B6_SPILL = 2;
export const FW_IF_SLOTS = 1024;
/** IPv4 direct /24 index, /16 level: one u32 per /16 in fw_table_cfg.d16 (an answer, or FW_D16_BLOCK | block index). */
export const FW_D16_WORDS = 1 << 16;
export const FW_D16_BLOCK = 0x80000000;
export const FW_D16_INDEX_MASK = 0xffffff;
/** Blocks (struct fw_d24_block: the 256 /24 words of one /16) a pool fw_*4_d24 holds at most. */
export const FW_D24_BLOCKS = 1 << 16;
export const FW_D24_SLOT_MASK = 0xffffff;
export const FW_D24_VERDICT_SHIFT = 24;
export const FW_D24_LEN_SHIFT = 26;
export const FW_D24_LONGER = 0x80000000;
export const FW_IFS_FALLBACK = 1;
/** fw_table_cfg.flags: CPUs at or above cpu_rows count in the overflow row (atomic adds). */
export const FW_CFG_OVERFLOW_ROW = 1;

/** enum fw_table_id: bit 0 = IPv6, bit 1 = egress (what tableIndex() computes). */
export const FW_TABLE = { IN4: 0, IN6: 1, EG4: 2, EG6: 3 } as const;
export const FW_TABLE_COUNT = 4;
export const FW_DIR = { ingress: 0, egress: 1 } as const;
export const FW_ACTION = { deny: 1, allow: 2 } as const;
export const FW_MODE = { enforce: 1, monitor: 2 } as const;
export const FW_DEFAULT = { pass: 0, drop: 1 } as const;
export const FW_SV = { pass: 0, drop: 1, wouldDrop: 2 } as const;

/** Constants as the C header names them (checked by the ABI test). */
export const ABI_ENUMS: Readonly<Record<string, number | bigint>> = {
  FW_ABI_VERSION,
  FW_STORE_ID_MAX,
  FW_MAX_HASH_LENS,
  FW_LEN_SLOTS,
  FW_MAX_RULE_SLOTS,
  FW_HASH_MUL,
  FW_HASH_MUL4,
  FW_HASH_MUL6_0: FW_HASH_MUL6[0],
  FW_HASH_MUL6_1: FW_HASH_MUL6[1],
  FW_HASH_MUL6_2: FW_HASH_MUL6[2],
  FW_HASH_MUL6_3: FW_HASH_MUL6[3],
  FW_HASH_SEED2,
  FW_B4_WORDS,
  FW_B4_SLOTS,
  FW_TAG4_MUL,
  FW_B6_SLOTS,
  FW_S4_KEY_MASK,
  FW_S4_SLOT_MASK,
  FW_S4_VERDICT_SHIFT,
  FW_S4_CODE_SHIFT,
  FW_S4_CODE_SHORT,
  FW_S4_MONITOR,
  FW_S4_ADDR_SHIFT,
  FW_S4_SPILL,
  FW_S4_OVF,
  FW_M6_LEN_MASK,
  FW_M6_VALID,
  FW_M6_VERDICT_SHIFT,
  FW_M6_MONITOR,
  FW_M6_SLOT_SHIFT,
  FW_B6_OVF,
  FW_B6_SPILL,
  FW_IF_SLOTS,
  FW_IFS_FALLBACK,
  FW_D16_WORDS,
  FW_D16_BLOCK,
  FW_D16_INDEX_MASK,
  FW_D24_BLOCKS,
  FW_CFG_OVERFLOW_ROW,
  FW_D24_SLOT_MASK,
  FW_D24_VERDICT_SHIFT,
  FW_D24_LEN_SHIFT,
  FW_D24_LONGER,
  FW_TABLE_IN4: FW_TABLE.IN4,
  FW_TABLE_IN6: FW_TABLE.IN6,
  FW_TABLE_EG4: FW_TABLE.EG4,
  FW_TABLE_EG6: FW_TABLE.EG6,
  FW_TABLE_COUNT,
  FW_DIR_INGRESS: FW_DIR.ingress,
  FW_DIR_EGRESS: FW_DIR.egress,
  FW_ACTION_DENY: FW_ACTION.deny,
  FW_ACTION_ALLOW: FW_ACTION.allow,
  FW_MODE_ENFORCE: FW_MODE.enforce,
  FW_MODE_MONITOR: FW_MODE.monitor,
  FW_SV_PASS: FW_SV.pass,
  FW_SV_DROP: FW_SV.drop,
  FW_SV_WOULD_DROP: FW_SV.wouldDrop,
  FW_DEFAULT_PASS: FW_DEFAULT.pass,
  FW_DEFAULT_DROP: FW_DEFAULT.drop,
  ...EV_ENUMS,
  ...POLICY_ENUMS,
};

export const MAP = {
  IN4_TAB: 'fw_in4_tab',
  IN4_SPILL: 'fw_in4_spill',
  IN4_TRIE: 'fw_in4_trie',
  IN4_D24: 'fw_in4_d24',
  IN6_TAB: 'fw_in6_tab',
  IN6_SPILL: 'fw_in6_spill',
  IN6_TRIE: 'fw_in6_trie',
  EG4_TAB: 'fw_eg4_tab',
  EG4_SPILL: 'fw_eg4_spill',
  EG4_TRIE: 'fw_eg4_trie',
  EG4_D24: 'fw_eg4_d24',
  EG6_TAB: 'fw_eg6_tab',
  EG6_SPILL: 'fw_eg6_spill',
  EG6_TRIE: 'fw_eg6_trie',
  TBLCFG: 'fw_tblcfg',
  RULE_CNT: 'fw_rule_cnt',
  RULE_XCNT: 'fw_rule_xcnt',
  IF_CNT: 'fw_if_cnt',
  IF_CNTX: 'fw_if_cntx',
  JOURNAL: 'fw_journal',
  META: 'fw_meta',
  LENSTAT: 'fw_lenstat',
  ...EV_MAP,
  ...POLICY_MAP,
} as const;
export type MapName = (typeof MAP)[keyof typeof MAP];

/**
 * The maps of a generation (pinned under gen-<n>/, replaced by larger or
 * smaller ones as the rules need); the others (tries, interface counters,
 * meta, lenstat) are pinned once, at the top of the pin directory.
 */
export const GEN_MAPS: ReadonlySet<MapName> = new Set([
  MAP.IN4_TAB,
  MAP.IN4_SPILL,
  MAP.IN4_D24,
  MAP.IN6_TAB,
  MAP.IN6_SPILL,
  MAP.EG4_TAB,
  MAP.EG4_SPILL,
  MAP.EG4_D24,
  MAP.EG6_TAB,
  MAP.EG6_SPILL,
  MAP.TBLCFG,
  MAP.RULE_CNT,
  MAP.RULE_XCNT,
  MAP.JOURNAL,
]);

/** The C macro that names each map (FW_MAP_IN4_TAB -> "fw_in4_tab"). */
export const ABI_MAP_MACROS: Readonly<Record<string, MapName>> = Object.fromEntries(
  Object.entries(MAP).map(([k, v]) => [`FW_MAP_${k}`, v]),
);

/**
 * The programs: each object holds one with the sampled drop events and one
 * without any event code (`_NOEV`), the same body specialised at compile time.
 */
export const PROG = {
  XDP: 'fw_xdp_ingress',
  TC: 'fw_tc_egress',
  XDP_NOEV: 'fw_xdp_noev',
  TC_NOEV: 'fw_tc_noev',
} as const;
export const ABI_PROG_MACROS: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(PROG).map(([k, v]) => [`FW_PROG_${k}`, v]),
);

/** The pair of programs a datapath loads: with the event code, or without it (events off). */
export function programNames(events: boolean): { readonly xdp: string; readonly tc: string } {
  return events ? { xdp: PROG.XDP, tc: PROG.TC } : { xdp: PROG.XDP_NOEV, tc: PROG.TC_NOEV };
}

/** sizeof and offsetof of every ABI struct. */
export const LAYOUT = {
  fw_key4: { size: 8, fields: { prefixlen: 0, addr: 4 } },
  fw_key6: { size: 20, fields: { prefixlen: 0, addr: 4 } },
  fw_entry: { size: 8, fields: { slot: 0, action: 4, mode: 5, prefixlen: 6, flags: 7 } },
  fw_bucket4: { size: 64, fields: { w: 0 } },
  fw_slot6: { size: 24, fields: { hi: 0, lo: 8, meta: 16 } },
  fw_bucket6: { size: 128, fields: { s: 0, flags: 120 } },
  fw_d24_block: { size: 1024, fields: { w: 0 } },
  fw_lenset: { size: 12, fields: { n_hash: 0, use_trie: 1, pad: 2, lens: 4 } },
  fw_table_cfg: {
    size: 262200,
    fields: { active: 0, default_action: 4, nbuckets: 8, seed: 12, rule_slots: 16, cpu_rows: 20, flags: 24, pad: 28, set: 32, d16: 56 },
  },
  fw_counter: { size: 16, fields: { packets: 0, bytes: 8 } },
  fw_if_key: { size: 8, fields: { ifindex: 0, direction: 4 } },
  fw_verdict_cnt: { size: 48, fields: { pass: 0, drop: 16, would_drop: 32 } },
  fw_if_slot: { size: 64, fields: { ifindex: 0, flags: 4, pad: 8, c: 16 } },
  fw_journal_rule: {
    size: 40,
    fields: { id: 0, expire_unix_ms: 8, addr: 16, prefixlen: 32, family: 33, direction: 34, action: 35, mode: 36, pad: 37 },
  },
  fw_meta: {
    size: 112,
    fields: {
      abi_version: 0,
      default_action: 4,
      revision: 8,
      max_hash_lens: 16,
      dirty: 20,
      created_unix_ms: 24,
      prefixes_per_table: 32,
      rule_slots: 36,
      store_id: 40,
      gen: 104,
      next_gen: 108,
    },
  },
  fw_lenstat: { size: 520, fields: { count: 0, pad: 516 } },
  ...EV_LAYOUT,
  ...POLICY_LAYOUT,
} as const;

const L = LAYOUT;

// ---- tables

/** A kernel table (enum fw_table_id, the OpBatch table column): 0 ingress IPv4, 1 ingress IPv6, 2 egress IPv4, 3 egress IPv6. */
export type TableIndex = 0 | 1 | 2 | 3;

/** The table of a direction and family. */
export function tableIndex(direction: RuleDirection, family: 4 | 6): TableIndex {
  return ((direction === 'egress' ? FW_TABLE.EG4 : FW_TABLE.IN4) | (family === 6 ? FW_TABLE.IN6 : 0)) as TableIndex;
}

export function tableFamily(t: number): 4 | 6 {
  return (t & FW_TABLE.IN6) !== 0 ? 6 : 4;
}

export function tableDirection(t: number): RuleDirection {
  return (t & FW_TABLE.EG4) !== 0 ? 'egress' : 'ingress';
}

export interface TableDesc {
  readonly id: TableIndex;
  readonly direction: RuleDirection;
  readonly family: 4 | 6;
  /** The bucketed hash (mmapable ARRAY of fw_bucket4/6). */
  readonly tab: MapName;
  /** Kernel HASH for keys whose two buckets are full. */
  readonly spill: MapName;
  readonly trie: MapName;
  /** IPv4: the blocks of the direct /24 index (an mmapable ARRAY of fw_d24_block, sized to the blocks in use). */
  readonly d24: MapName | null;
  /** Key size of the trie and the spill hash. */
  readonly keySize: number;
  readonly addrBytes: 4 | 16;
  readonly maxLen: 32 | 128;
}

/** The four tables, indexed by table index (TABLES[t].id === t; the ABI test checks it). */
export const TABLES: readonly TableDesc[] = [
  {
    id: FW_TABLE.IN4,
    direction: 'ingress',
    family: 4,
    tab: MAP.IN4_TAB,
    spill: MAP.IN4_SPILL,
    trie: MAP.IN4_TRIE,
    d24: MAP.IN4_D24,
    keySize: 8,
    addrBytes: 4,
    maxLen: 32,
  },
  {
    id: FW_TABLE.IN6,
    direction: 'ingress',
    family: 6,
    tab: MAP.IN6_TAB,
    spill: MAP.IN6_SPILL,
    trie: MAP.IN6_TRIE,
    d24: null,
    keySize: 20,
    addrBytes: 16,
    maxLen: 128,
  },
  {
    id: FW_TABLE.EG4,
    direction: 'egress',
    family: 4,
    tab: MAP.EG4_TAB,
    spill: MAP.EG4_SPILL,
    trie: MAP.EG4_TRIE,
    d24: MAP.EG4_D24,
    keySize: 8,
    addrBytes: 4,
    maxLen: 32,
  },
  {
    id: FW_TABLE.EG6,
    direction: 'egress',
    family: 6,
    tab: MAP.EG6_TAB,
    spill: MAP.EG6_SPILL,
    trie: MAP.EG6_TRIE,
    d24: null,
    keySize: 20,
    addrBytes: 16,
    maxLen: 128,
  },
];

// ---- fw_table_cfg

export interface LenSet {
  hashLens: number[]; // descending
  useTrie: boolean;
}

/** A fw_table_cfg value without its /16 words (d16: written and read through the mapping). */
export interface TableCfg {
  active: number;
  defaultAction: number;
  /** Fixed per generation. */
  nbuckets: number;
  seed: number;
  ruleSlots: number;
  cpuRows: number;
  /** FW_CFG_OVERFLOW_ROW. */
  flags: number;
  sets: [LenSet, LenSet];
}

/** Bytes of a fw_table_cfg before its /16 words (what encodeTableCfg writes). */
export const TABLE_CFG_HEAD = L.fw_table_cfg.fields.d16;

/** The head of a fw_table_cfg value (everything before d16). */
export function encodeTableCfg(c: TableCfg): Buffer {
  const b = Buffer.alloc(TABLE_CFG_HEAD);
  const F = L.fw_table_cfg.fields;
  b.writeUInt32LE(c.active, F.active);
  b.writeUInt32LE(c.defaultAction, F.default_action);
  b.writeUInt32LE(c.nbuckets >>> 0, F.nbuckets);
  b.writeUInt32LE(c.seed >>> 0, F.seed);
  b.writeUInt32LE(c.ruleSlots >>> 0, F.rule_slots);
  b.writeUInt32LE(c.cpuRows >>> 0, F.cpu_rows);
  b.writeUInt32LE(c.flags >>> 0, F.flags);
  for (let i = 0; i < 2; i++) b.set(encodeLenSet(c.sets[i]!), L.fw_table_cfg.fields.set + i * L.fw_lenset.size);
  return b;
}

/** One fw_lenset. */
export function encodeLenSet(s: LenSet): Uint8Array {
  const b = new Uint8Array(L.fw_lenset.size);
  if (s.hashLens.length > FW_MAX_HASH_LENS) throw new Error(`too many hash lengths: ${s.hashLens.length}`);
  b[L.fw_lenset.fields.n_hash] = s.hashLens.length;
  b[L.fw_lenset.fields.use_trie] = s.useTrie ? 1 : 0;
  s.hashLens.forEach((len, j) => {
    b[L.fw_lenset.fields.lens + j] = len;
  });
  return b;
}

export function decodeTableCfg(b: Buffer): TableCfg {
  const sets: LenSet[] = [];
  for (let i = 0; i < 2; i++) {
    const o = L.fw_table_cfg.fields.set + i * L.fw_lenset.size;
    const n = Math.min(b[o + L.fw_lenset.fields.n_hash]!, FW_MAX_HASH_LENS);
    const hashLens: number[] = [];
    for (let j = 0; j < n; j++) hashLens.push(b[o + L.fw_lenset.fields.lens + j]!);
    sets.push({ hashLens, useTrie: b[o + L.fw_lenset.fields.use_trie] !== 0 });
  }
  const F = L.fw_table_cfg.fields;
  return {
    active: b.readUInt32LE(F.active) & 1,
    defaultAction: b.readUInt32LE(F.default_action),
    nbuckets: b.readUInt32LE(F.nbuckets),
    seed: b.readUInt32LE(F.seed),
    ruleSlots: b.readUInt32LE(F.rule_slots),
    cpuRows: b.readUInt32LE(F.cpu_rows),
    flags: b.readUInt32LE(F.flags),
    sets: [sets[0]!, sets[1]!],
  };
}

// ---- fw_meta

export interface MetaValue {
  revision: bigint;
  storeId: string;
  abiVersion: number;
  defaultAction: number;
  maxHashLens: number;
  dirty: boolean;
  createdUnixMs: bigint;
  prefixesPerTable: number;
  ruleSlots: number;
  /** The generation in force (its maps under gen-<gen>/). */
  gen: number;
  /** 0, or the complete generation being swapped in. */
  nextGen: number;
}

export function encodeMeta(m: MetaValue): Buffer {
  const F = L.fw_meta.fields;
  const b = Buffer.alloc(L.fw_meta.size);
  b.writeBigUInt64LE(m.revision, F.revision);
  const id = Buffer.from(m.storeId, 'utf8');
  if (id.length > FW_STORE_ID_MAX) throw new Error(`store id "${m.storeId}" is longer than ${FW_STORE_ID_MAX} bytes`);
  id.copy(b, F.store_id);
  b.writeUInt32LE(m.abiVersion, F.abi_version);
  b.writeUInt32LE(m.defaultAction, F.default_action);
  b.writeUInt32LE(m.maxHashLens, F.max_hash_lens);
  b.writeUInt32LE(m.dirty ? 1 : 0, F.dirty);
  b.writeBigUInt64LE(m.createdUnixMs, F.created_unix_ms);
  b.writeUInt32LE(m.prefixesPerTable >>> 0, F.prefixes_per_table);
  b.writeUInt32LE(m.ruleSlots >>> 0, F.rule_slots);
  b.writeUInt32LE(m.gen >>> 0, F.gen);
  b.writeUInt32LE(m.nextGen >>> 0, F.next_gen);
  return b;
}

export function decodeMeta(b: Buffer): MetaValue {
  const F = L.fw_meta.fields;
  const id = b.subarray(F.store_id, F.store_id + FW_STORE_ID_MAX);
  const end = id.indexOf(0);
  return {
    revision: b.readBigUInt64LE(F.revision),
    storeId: id.subarray(0, end < 0 ? FW_STORE_ID_MAX : end).toString('utf8'),
    abiVersion: b.readUInt32LE(F.abi_version),
    defaultAction: b.readUInt32LE(F.default_action),
    maxHashLens: b.readUInt32LE(F.max_hash_lens),
    dirty: b.readUInt32LE(F.dirty) !== 0,
    createdUnixMs: b.readBigUInt64LE(F.created_unix_ms),
    prefixesPerTable: b.readUInt32LE(F.prefixes_per_table),
    ruleSlots: b.readUInt32LE(F.rule_slots),
    gen: b.readUInt32LE(F.gen),
    nextGen: b.readUInt32LE(F.next_gen),
  };
}
