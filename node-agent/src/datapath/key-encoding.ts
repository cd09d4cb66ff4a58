// Keys and values of the tries and spill hashes (struct fw_key4 / fw_key6,
// struct fw_entry) written from the columns of an OpBatch, and the IPv4
// prefix mask. Pure; allocates nothing per op.

import { maskInto } from '../../../common/src/cidr.js';
import { FW_ACTION, FW_MODE, LAYOUT, tableFamily } from './abi.js';
import { ATTR_ALLOW, ATTR_MONITOR, type OpBatch } from './datapath.js';

const K = LAYOUT.fw_key4.fields; // fw_key6 has the same two fields at the same offsets
const EF = LAYOUT.fw_entry.fields;

/** An IPv4 address (the number whose big-endian bytes are the address) with the bits after len cleared. */
export function maskedAddr4(a: number, len: number): number {
  return len === 0 ? 0 : (a & ((0xffffffff << (32 - len)) >>> 0)) >>> 0;
}

/** Writes op i's key {prefixlen, address with host bits cleared} at `off`. */
export function writeKeyOp(buf: Buffer, off: number, b: OpBatch, i: number): void {
  const len = b.len[i]!;
  buf.writeUInt32LE(len, off + K.prefixlen);
  if (tableFamily(b.table[i]!) === 4) buf.writeUInt32BE(maskedAddr4(b.addr4[i]!, len), off + K.addr);
  else maskInto(buf, off + K.addr, b.addr6, i * 16, 16, len);
}

/** The masked address of a key at `off` (IPv4, as a number). */
export function keyAddr4(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off + K.addr);
}

/** The prefix length of a key at `off`. */
export function keyLen(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off + K.prefixlen);
}

const key6 = new Uint8Array(16);

/** A value naming op i's prefix within its table (capacity replay, keys repeated in one batch). */
export function batchKey(b: OpBatch, i: number): number | string {
  const len = b.len[i]!;
  if (tableFamily(b.table[i]!) === 4) return len * 4294967296 + maskedAddr4(b.addr4[i]!, len);
  maskInto(key6, 0, b.addr6, i * 16, 16, len);
  let s = String.fromCharCode(len);
  for (let k = 0; k < 16; k++) s += String.fromCharCode(key6[k]!);
  return s;
}

/** Writes a fw_entry value (attrs: ATTR_ALLOW | ATTR_MONITOR). */
export function writeEntryValue(buf: Buffer, off: number, slot: number, attrs: number, len: number): void {
  buf.writeUInt32LE(slot >>> 0, off + EF.slot);
  buf[off + EF.action] = (attrs & ATTR_ALLOW) !== 0 ? FW_ACTION.allow : FW_ACTION.deny;
  buf[off + EF.mode] = (attrs & ATTR_MONITOR) !== 0 ? FW_MODE.monitor : FW_MODE.enforce;
  buf[off + EF.prefixlen] = len;
  buf[off + EF.flags] = 0;
}

/** attrs of a fw_entry value at `off`. */
export function entryAttrs(v: Buffer, off: number): number {
  return (v[off + EF.action] === FW_ACTION.allow ? ATTR_ALLOW : 0) | (v[off + EF.mode] === FW_MODE.monitor ? ATTR_MONITOR : 0);
}

/** The counter slot of a fw_entry value at `off`. */
export function entrySlot(v: Buffer, off: number): number {
  return v.readUInt32LE(off + EF.slot);
}

/** The prefix length a fw_entry value at `off` carries (a trie hit's own length). */
export function entryLen(v: Buffer, off: number): number {
  return v[off + EF.prefixlen]!;
}
