// TypeScript mirror of bpf/include/fleetwall_abi.h: constants, struct sizes
// and field offsets, and the encoders/decoders that use them.
// test/dataplane/abi.test.ts compiles the header and compares every size,
// offset, enum value and map name below with the C side (and with the map
// key/value sizes in the committed objects): edit both together.

import type { RuleAction, RuleDirection, RuleMode } from '../../../common/src/policy.js';

export const FW_ABI_VERSION = 1;
export const FW_MAX_HASH_LENS = 8;
export const FW_LEN_SLOTS = 129;

export const FW_TABLE = { IN4: 0, IN6: 1, EG4: 2, EG6: 3 } as const;
export const FW_TABLE_COUNT = 4;
export const FW_DIR = { ingress: 0, egress: 1 } as const;
export const FW_ACTION = { deny: 1, allow: 2 } as const;
export const FW_MODE = { enforce: 1, monitor: 2 } as const;
export const FW_DEFAULT = { pass: 0, drop: 1 } as const;

/** Enum constants as the C header names them (checked by the ABI test). */
export const ABI_ENUMS: Readonly<Record<string, number>> = {
  FW_ABI_VERSION,
  FW_MAX_HASH_LENS,
  FW_LEN_SLOTS,
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
  FW_DEFAULT_PASS: FW_DEFAULT.pass,
  FW_DEFAULT_DROP: FW_DEFAULT.drop,
};

export const MAP = {
  IN4_HASH: 'fw_in4_hash',
  IN4_TRIE: 'fw_in4_trie',
  IN6_HASH: 'fw_in6_hash',
  IN6_TRIE: 'fw_in6_trie',
  EG4_HASH: 'fw_eg4_hash',
  EG4_TRIE: 'fw_eg4_trie',
  EG6_HASH: 'fw_eg6_hash',
  EG6_TRIE: 'fw_eg6_trie',
  TBLCFG: 'fw_tblcfg',
  RULE_CNT: 'fw_rule_cnt',
  IF_CNT: 'fw_if_cnt',
  JOURNAL: 'fw_journal',
  META: 'fw_meta',
  LENSTAT: 'fw_lenstat',
} as const;
export type MapName = (typeof MAP)[keyof typeof MAP];

/** The C macro that names each map (FW_MAP_IN4_HASH -> "fw_in4_hash"). */
export const ABI_MAP_MACROS: Readonly<Record<string, MapName>> = Object.fromEntries(
  Object.entries(MAP).map(([k, v]) => [`FW_MAP_${k}`, v]),
);

export const PROG = { XDP: 'fw_xdp_ingress', TC: 'fw_tc_egress' } as const;
export const ABI_PROG_MACROS: Readonly<Record<string, string>> = { FW_PROG_XDP: PROG.XDP, FW_PROG_TC: PROG.TC };

/** sizeof and offsetof of every ABI struct. */
export const LAYOUT = {
  fw_key4: { size: 8, fields: { prefixlen: 0, addr: 4 } },
  fw_key6: { size: 20, fields: { prefixlen: 0, addr: 4 } },
  fw_entry: { size: 8, fields: { slot: 0, action: 4, mode: 5, prefixlen: 6, flags: 7 } },
  fw_lenset: { size: 12, fields: { n_hash: 0, use_trie: 1, pad: 2, lens: 4 } },
  fw_table_cfg: { size: 32, fields: { active: 0, default_action: 4, set: 8 } },
  fw_counter: { size: 16, fields: { packets: 0, bytes: 8 } },
  fw_if_key: { size: 8, fields: { ifindex: 0, direction: 4 } },
  fw_verdict_cnt: { size: 48, fields: { pass: 0, drop: 16, would_drop: 32 } },
  fw_journal_rule: {
    size: 40,
    fields: { prefixlen: 0, addr: 4, family: 20, direction: 21, action: 22, mode: 23, slot: 24, expire_unix_ms: 32 },
  },
  fw_meta: {
    size: 48,
    fields: {
      revision: 0,
      store_id: 8,
      abi_version: 24,
      default_action: 28,
      max_hash_lens: 32,
      dirty: 36,
      created_unix_ms: 40,
    },
  },
  fw_lenstat: { size: 520, fields: { count: 0, pad: 516 } },
} as const;
export type StructName = keyof typeof LAYOUT;

const L = LAYOUT;

// ---- table helpers

export interface TableDesc {
  readonly id: number;
  readonly direction: RuleDirection;
  readonly family: 4 | 6;
  readonly hash: MapName;
  readonly trie: MapName;
  readonly keySize: number;
  readonly addrBytes: 4 | 16;
  readonly maxLen: 32 | 128;
}

export const TABLES: readonly TableDesc[] = [
  { id: 0, direction: 'ingress', family: 4, hash: MAP.IN4_HASH, trie: MAP.IN4_TRIE, keySize: 8, addrBytes: 4, maxLen: 32 },
  { id: 1, direction: 'ingress', family: 6, hash: MAP.IN6_HASH, trie: MAP.IN6_TRIE, keySize: 20, addrBytes: 16, maxLen: 128 },
  { id: 2, direction: 'egress', family: 4, hash: MAP.EG4_HASH, trie: MAP.EG4_TRIE, keySize: 8, addrBytes: 4, maxLen: 32 },
  { id: 3, direction: 'egress', family: 6, hash: MAP.EG6_HASH, trie: MAP.EG6_TRIE, keySize: 20, addrBytes: 16, maxLen: 128 },
];

export function tableFor(direction: RuleDirection, family: 4 | 6): TableDesc {
  return TABLES[(direction === 'egress' ? 2 : 0) + (family === 6 ? 1 : 0)]!;
}

// ---- fw_entry

export interface EntryValue {
  slot: number;
  action: RuleAction;
  mode: RuleMode;
  prefixlen: number;
}

const E_SLOT = L.fw_entry.fields.slot;
const E_ACTION = L.fw_entry.fields.action;
const E_MODE = L.fw_entry.fields.mode;
const E_LEN = L.fw_entry.fields.prefixlen;
const E_FLAGS = L.fw_entry.fields.flags;

export function writeEntry(buf: Buffer, off: number, slot: number, action: RuleAction, mode: RuleMode, len: number): void {
  buf.writeUInt32LE(slot >>> 0, off + E_SLOT);
  buf[off + E_ACTION] = action === 'allow' ? FW_ACTION.allow : FW_ACTION.deny;
  buf[off + E_MODE] = mode === 'monitor' ? FW_MODE.monitor : FW_MODE.enforce;
  buf[off + E_LEN] = len;
  buf[off + E_FLAGS] = 0;
}

export function readEntry(buf: Buffer, off: number): EntryValue {
  const F = L.fw_entry.fields;
  return {
    slot: buf.readUInt32LE(off + F.slot),
    action: buf[off + F.action] === FW_ACTION.allow ? 'allow' : 'deny',
    mode: buf[off + F.mode] === FW_MODE.monitor ? 'monitor' : 'enforce',
    prefixlen: buf[off + F.prefixlen]!,
  };
}

/** Writes an LPM/hash key: prefixlen (host order u32) + masked address. */
export function writeKey(buf: Buffer, off: number, len: number, addr: Uint8Array): void {
  buf.writeUInt32LE(len, off);
  buf.set(addr, off + 4);
}

// ---- fw_table_cfg

export interface LenSet {
  hashLens: number[]; // descending
  useTrie: boolean;
}

export interface TableCfg {
  active: number;
  defaultAction: number;
  sets: [LenSet, LenSet];
}

export function encodeTableCfg(c: TableCfg): Buffer {
  const b = Buffer.alloc(L.fw_table_cfg.size);
  b.writeUInt32LE(c.active, L.fw_table_cfg.fields.active);
  b.writeUInt32LE(c.defaultAction, L.fw_table_cfg.fields.default_action);
  for (let i = 0; i < 2; i++) {
    const s = c.sets[i]!;
    const o = L.fw_table_cfg.fields.set + i * L.fw_lenset.size;
    if (s.hashLens.length > FW_MAX_HASH_LENS) throw new Error(`too many hash lengths: ${s.hashLens.length}`);
    b[o + L.fw_lenset.fields.n_hash] = s.hashLens.length;
    b[o + L.fw_lenset.fields.use_trie] = s.useTrie ? 1 : 0;
    s.hashLens.forEach((len, j) => {
      b[o + L.fw_lenset.fields.lens + j] = len;
    });
  }
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
  return {
    active: b.readUInt32LE(L.fw_table_cfg.fields.active) & 1,
    defaultAction: b.readUInt32LE(L.fw_table_cfg.fields.default_action),
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
}

export function encodeMeta(m: MetaValue): Buffer {
  const F = L.fw_meta.fields;
  const b = Buffer.alloc(L.fw_meta.size);
  b.writeBigUInt64LE(m.revision, F.revision);
  const id = Buffer.from(m.storeId, 'utf8');
  if (id.length > 16) throw new Error(`store id "${m.storeId}" is longer than 16 bytes`);
  id.copy(b, F.store_id);
  b.writeUInt32LE(m.abiVersion, F.abi_version);
  b.writeUInt32LE(m.defaultAction, F.default_action);
  b.writeUInt32LE(m.maxHashLens, F.max_hash_lens);
  b.writeUInt32LE(m.dirty ? 1 : 0, F.dirty);
  b.writeBigUInt64LE(m.createdUnixMs, F.created_unix_ms);
  return b;
}

export function decodeMeta(b: Buffer): MetaValue {
  const F = L.fw_meta.fields;
  const id = b.subarray(F.store_id, F.store_id + 16);
  const end = id.indexOf(0);
  return {
    revision: b.readBigUInt64LE(F.revision),
    storeId: id.subarray(0, end < 0 ? 16 : end).toString('utf8'),
    abiVersion: b.readUInt32LE(F.abi_version),
    defaultAction: b.readUInt32LE(F.default_action),
    maxHashLens: b.readUInt32LE(F.max_hash_lens),
    dirty: b.readUInt32LE(F.dirty) !== 0,
    createdUnixMs: b.readBigUInt64LE(F.created_unix_ms),
  };
}

// ---- fw_journal_rule

export const JOURNAL_KEY_SIZE = 8;

export function writeJournalRule(
  b: Buffer,
  off: number,
  r: {
    prefix: { family: 4 | 6; bytes: Uint8Array; len: number };
    direction: RuleDirection;
    action: RuleAction;
    mode: RuleMode;
    slot: number;
    expireUnixMs: number;
  },
): void {
  const F = L.fw_journal_rule.fields;
  b.fill(0, off, off + L.fw_journal_rule.size);
  b.writeUInt32LE(r.prefix.len, off + F.prefixlen);
  b.set(r.prefix.bytes, off + F.addr);
  b[off + F.family] = r.prefix.family;
  b[off + F.direction] = FW_DIR[r.direction];
  b[off + F.action] = FW_ACTION[r.action];
  b[off + F.mode] = FW_MODE[r.mode];
  b.writeUInt32LE(r.slot >>> 0, off + F.slot);
  b.writeBigUInt64LE(BigInt(r.expireUnixMs), off + F.expire_unix_ms);
}

export function readJournalRule(b: Buffer, off: number) {
  const F = L.fw_journal_rule.fields;
  const family = b[off + F.family] === 6 ? 6 : 4;
  const n = family === 6 ? 16 : 4;
  return {
    prefixlen: b.readUInt32LE(off + F.prefixlen),
    family: family as 4 | 6,
    addr: new Uint8Array(b.subarray(off + F.addr, off + F.addr + n)),
    direction: (b[off + F.direction] === FW_DIR.egress ? 'egress' : 'ingress') as RuleDirection,
    action: (b[off + F.action] === FW_ACTION.allow ? 'allow' : 'deny') as RuleAction,
    mode: (b[off + F.mode] === FW_MODE.monitor ? 'monitor' : 'enforce') as RuleMode,
    slot: b.readUInt32LE(off + F.slot),
    expireUnixMs: Number(b.readBigUInt64LE(off + F.expire_unix_ms)),
  };
}
