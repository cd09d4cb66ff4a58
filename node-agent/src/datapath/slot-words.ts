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
  FW_S4_CODE_SHIFT,
  FW_S4_CODE_SHORT,
  FW_S4_KEY_MASK,
  FW_S4_MONITOR,
  FW_S4_OVF,
  FW_S4_SLOT_MASK,
  FW_S4_SPILL,
  FW_S4_VERDICT_SHIFT,
  FW_SV,
  LAYOUT,
} from './abi.js';
import { ATTR_ALLOW, ATTR_MONITOR } from './datapath.js';

/** enum fw_slot_verdict fits in two bits (as the programs read it). */
const SV_BITS = 3;

// ---- IPv4: a bucket is FW_B4_WORDS u64 words, the tag word first, then FW_B4_SLOTS slot words.
// A slot word's low half: counter slot, verdict, length code, monitor (the /24 word's format: the
// programs count a hash hit as read); its high half: the masked address (the rest of the key).

/** The key's bits in the low half of a slot word: the length code. */
export const S4_KEY_LO = Number(FW_S4_KEY_MASK & 0xffffffffn);
/** Bucket flags, in the high half of the tag word. */
export const S4_SPILL_HI = Number(FW_S4_SPILL >> 32n);
export const S4_OVF_HI = Number(FW_S4_OVF >> 32n);

/** The verdict a slot carries: allow -> pass; deny -> drop, or would-drop in monitor mode. */
export function slotVerdict(attrs: number): number {
  return (attrs & ATTR_ALLOW) !== 0 ? FW_SV.pass : (attrs & ATTR_MONITOR) !== 0 ? FW_SV.wouldDrop : FW_SV.drop;
}

/** The length code of an IPv4 key (never 0): len - 24 for 25..32 (what the programs probe), else FW_S4_CODE_SHORT. */
export function code4(len: number): number {
  return len > 24 ? len - 24 : FW_S4_CODE_SHORT;
}

/** The high half of an IPv4 key (a: masked address): a, and for lengths 0..24 a 1 just after the prefix bits. */
export function keyHi4(a: number, len: number): number {
  return (len > 24 ? a : a + 2 ** (31 - len)) >>> 0;
}

/** The low half of a slot word: counter slot, verdict, length code, monitor. */
export function lo4(len: number, slot: number, attrs: number): number {
  return (
    (slot |
      (slotVerdict(attrs) << FW_S4_VERDICT_SHIFT) |
      (code4(len) << FW_S4_CODE_SHIFT) |
      ((attrs & ATTR_MONITOR) !== 0 ? FW_S4_MONITOR : 0)) >>>
    0
  );
}

/** The counter slot of a slot word's low half. */
export function slot4(lo: number): number {
  return lo & FW_S4_SLOT_MASK;
}

/** attrs (ATTR_*) of a slot word's low half. */
export function attrs4(lo: number): number {
  const v = (lo >>> FW_S4_VERDICT_SHIFT) & SV_BITS;
  return (v === FW_SV.pass ? ATTR_ALLOW : 0) | ((lo & FW_S4_MONITOR) !== 0 ? ATTR_MONITOR : 0);
}

const decoded4 = { len: 0, a: 0 };

/** The (length, address) of a live slot word's key (its halves lo, hi). Reuses one object. */
export function decodeKey4(lo: number, hi: number): { len: number; a: number } {
  const code = (lo & S4_KEY_LO) >>> FW_S4_CODE_SHIFT;
  if (code !== FW_S4_CODE_SHORT) {
    decoded4.len = 24 + code;
    decoded4.a = hi >>> 0;
    return decoded4;
  }
  // Lengths 0..24: the marker is the lowest set bit of the high half, at 31 - len.
  const p = 31 - Math.clz32(hi & -hi);
  decoded4.len = 31 - p;
  decoded4.a = (hi - 2 ** p) >>> 0;
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
