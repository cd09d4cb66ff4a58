// Kernel tables and compact prefix keys.
//
// A kernel table is one (direction, family) pair: 0 ingress/IPv4,
// 1 ingress/IPv6, 2 egress/IPv4, 3 egress/IPv6. A prefix within a table is
// keyed by a number for IPv4 ((dir * 2^32 + address) * 64 + len, exact in a
// double) and by an 18-character one-byte string for IPv6, so a million
// prefixes need no object each.

import { maskInto } from '../../../common/src/cidr.js';
import { type TableIndex, tableDirection, tableFamily } from '../datapath/datapath.js';

/** A kernel table: the datapath's one definition (`tableIndex`). */
export type TableId = TableIndex;
export const TABLES: readonly TableId[] = [0, 1, 2, 3];
export { tableDirection, tableFamily };

export function tableName(t: TableId): string {
  return `${tableDirection(t)} IPv${tableFamily(t)}`;
}

/** IPv4 address bytes (network order) as an unsigned 32-bit number. */
export function v4Word(bytes: Uint8Array, offset = 0): number {
  return ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
}

export function v4Mask(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

export function v4Key(t: TableId, word: number, len: number): number {
  return ((t >> 1) * 4294967296 + word) * 64 + len;
}

/** The address word of an IPv4 prefix key (v4Key), without an object. */
export function v4KeyWord(key: number): number {
  return ((key - (key % 64)) / 64) % 4294967296;
}

/** IPv6: table id, length, then the 16 address bytes, one char each. */
export function v6Key(t: TableId, bytes: Uint8Array, len: number, offset = 0): string {
  let s = String.fromCharCode(t, len);
  for (let i = 0; i < 16; i++) s += String.fromCharCode(bytes[offset + i]!);
  return s;
}

export function v6KeyBytes(key: string): Uint8Array {
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = key.charCodeAt(2 + i);
  return out;
}

/** The masked copy of 16 IPv6 bytes at `offset`. */
export function mask16(bytes: Uint8Array, len: number, offset = 0): Uint8Array {
  const out = new Uint8Array(16);
  maskInto(out, 0, bytes, offset, 16, len);
  return out;
}
