// The bucketed hash's slot words (bits in fleetwall_abi.h: FW_S4_*, FW_M6_*,
// FW_B6_*), as the u32 halves this side reads and writes them in (a u64 word
// i of the table is u32 words 2i (low) and 2i + 1 (high): little-endian hosts
// only). Pure.

import {
  FW_M6_LEN_MASK,
  FW_M6_MONITOR,
  FW_M6_SLOT_SHIFT,
  FW_M6_VALID,
  FW_M6_VERDICT_SHIFT,
  FW_S4_KEY_MASK,
  FW_S4_MONITOR,
  FW_S4_OVF,
  FW_S4_SLOT_MASK,
  FW_S4_SLOT_SHIFT,
  FW_S4_SPILL,
  FW_S4_VERDICT_SHIFT,
  FW_SV,
  LAYOUT,
} from './abi.js';
import { ATTR_ALLOW, ATTR_MONITOR } from './datapath.js';

/** enum fw_slot_verdict fits in two bits (as the programs read it). */
const SV_BITS = 3;

// ---- IPv4: a bucket is FW_B4_WORDS u64 words, the tag word first, then FW_B4_SLOTS slot words.

/** Key bit 32, in the high half of a slot word. */
export const S4_KEY_HI = Number(FW_S4_KEY_MASK >> 32n);
const S4_SLOT_SHIFT_HI = FW_S4_SLOT_SHIFT - 32;
const S4_VERDICT_SHIFT_HI = FW_S4_VERDICT_SHIFT - 32;
const S4_MONITOR_HI = Number(FW_S4_MONITOR >> 32n);
/** Bucket flags, in the high half of the tag word. */
export const S4_SPILL_HI = Number(FW_S4_SPILL >> 32n);
export const S4_OVF_HI = Number(FW_S4_OVF >> 32n);

/** The verdict a slot carries: allow -> pass; deny -> drop, or would-drop in monitor mode. */
export function slotVerdict(attrs: number): number {
  return (attrs & ATTR_ALLOW) !== 0 ? FW_SV.pass : (attrs & ATTR_MONITOR) !== 0 ? FW_SV.wouldDrop : FW_SV.drop;
}

/** The 33-bit key of an IPv4 prefix (a: masked address): the prefix bits, a 1, then zeros. */
export function key4(a: number, len: number): number {
  return a * 2 + 2 ** (32 - len);
}

/** The high half of a slot word: key bit 32, counter slot, verdict, monitor. */
export function hi4(keyBit32: number, slot: number, attrs: number): number {
  return (
    keyBit32 | (slot << S4_SLOT_SHIFT_HI) | (slotVerdict(attrs) << S4_VERDICT_SHIFT_HI) | ((attrs & ATTR_MONITOR) !== 0 ? S4_MONITOR_HI : 0)
  );
}

/** The counter slot of a slot word's high half. */
export function slot4(hi: number): number {
  return (hi >>> S4_SLOT_SHIFT_HI) & FW_S4_SLOT_MASK;
}

/** attrs (ATTR_*) of a slot word's high half. */
export function attrs4(hi: number): number {
  const v = (hi >>> S4_VERDICT_SHIFT_HI) & SV_BITS;
  return (v === FW_SV.pass ? ATTR_ALLOW : 0) | ((hi & S4_MONITOR_HI) !== 0 ? ATTR_MONITOR : 0);
}

const decoded4 = { len: 0, a: 0 };

/** The (length, address) of a slot word's key: the marker is the lowest set bit of the 33-bit key. Reuses one object. */
export function decodeKey4(lo: number, bit32: number): { len: number; a: number } {
  if (lo === 0) {
    // Only bit 32: the /0 key.
    decoded4.len = 0;
    decoded4.a = 0;
    return decoded4;
  }
  const p = 31 - Math.clz32(lo & -lo);
  decoded4.len = 32 - p;
  // key = bit32 * 2^32 + lo, a = (key - 2^p) / 2
  decoded4.a = (bit32 * 2147483648 + (lo - 2 ** p) / 2) >>> 0;
  return decoded4;
}

// ---- IPv6: a bucket is FW_B6_SLOTS slots of {hi, lo, meta} u64 words, then the flags word.

/** u64 words per bucket, per slot; the meta word in a slot; the flags word in a bucket. */
export const B6_WORDS = LAYOUT.fw_bucket6.size / 8;
export const S6_WORDS = LAYOUT.fw_slot6.size / 8;
export const S6_META = LAYOUT.fw_slot6.fields.meta / 8;
export const B6_FLAGS = LAYOUT.fw_bucket6.fields.flags / 8;
/** The meta word's high half holds the counter slot. */
export const M6_SLOT_HALF = FW_M6_SLOT_SHIFT / 32;
/** What a meta word's low half must hold, under this mask, to be the key of length len: FW_M6_VALID | len. */
export const M6_KEY_MASK = FW_M6_VALID | FW_M6_LEN_MASK;

/** The low half of a meta word: length, valid, verdict, monitor. */
export function lo6(len: number, attrs: number): number {
  return len | FW_M6_VALID | (slotVerdict(attrs) << FW_M6_VERDICT_SHIFT) | ((attrs & ATTR_MONITOR) !== 0 ? FW_M6_MONITOR : 0);
}

/** attrs (ATTR_*) of a meta word's low half. */
export function attrs6(lo: number): number {
  const v = (lo >>> FW_M6_VERDICT_SHIFT) & SV_BITS;
  return (v === FW_SV.pass ? ATTR_ALLOW : 0) | ((lo & FW_M6_MONITOR) !== 0 ? ATTR_MONITOR : 0);
}
