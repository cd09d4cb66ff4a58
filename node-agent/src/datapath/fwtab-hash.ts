// The bucketed hash's hash and geometry, exactly as the programs compute them
// (fw_decide.h; constants in fleetwall_abi.h). Pure.

import { FW_HASH_MUL, FW_HASH_MUL4, FW_HASH_MUL6, FW_HASH_SEED2, FW_TAG4_MUL } from './abi.js';

/** murmur3's 32-bit finaliser (fw_fmix in fw_decide.h). */
function fmix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** floor(x * n / 2^32), exactly (fw_range). */
export function range32(x: number, n: number): number {
  const hi = x >>> 16;
  const lo = x & 0xffff;
  return Math.floor((hi * n + Math.floor((lo * n) / 65536)) / 65536);
}

/**
 * h1 of a key (fw_probe4/fw_probe6): bytes = the address with host bits
 * cleared (4 or 16 bytes). Bucket 1 = range32(h1, n), bucket 2 = range32(h2(h1), n).
 */
export function keyHash(seed: number, len: number, bytes: Uint8Array): number {
  if (bytes.length === 4) {
    const a = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
    return Math.imul((a ^ seed ^ Math.imul(len, FW_HASH_MUL)) >>> 0, FW_HASH_MUL4) >>> 0;
  }
  let x = seed ^ Math.imul(len, FW_HASH_MUL);
  for (let j = 0; j < 4; j++) {
    const w = (bytes[4 * j]! | (bytes[4 * j + 1]! << 8) | (bytes[4 * j + 2]! << 16) | (bytes[4 * j + 3]! << 24)) >>> 0;
    x ^= Math.imul(w, FW_HASH_MUL6[j]!);
  }
  return fmix32(x >>> 0);
}

/** The hash of a key's second bucket. */
export function h2(h1: number): number {
  return fmix32((h1 ^ FW_HASH_SEED2) >>> 0);
}

/** The tag of an IPv4 key in its buckets' tag words, from its h1 (0x80..0xff; 0 = an empty slot). */
export function tag4(h1: number): number {
  return 0x80 | (Math.imul(h1, FW_TAG4_MUL) >>> 25);
}

/** The two candidate buckets of a key (bytes masked). */
export function bucketsOf(seed: number, nbuckets: number, len: number, bytes: Uint8Array): [number, number] {
  const h1 = keyHash(seed, len, bytes);
  return [range32(h1, nbuckets), range32(h2(h1), nbuckets)];
}

/** Buckets for a capacity: IPv4 (7 slots) at most 4/7 full, IPv6 (5 slots) at most 60% full. */
export function bucketsFor(family: 4 | 6, capacity: number): number {
  return Math.max(64, Math.ceil(family === 4 ? capacity / 4 : capacity / 3));
}

/** Spill hash size for a capacity (a key lands there only when both its buckets are full). */
export function spillSizeFor(capacity: number): number {
  return Math.max(1024, Math.ceil(capacity / 16));
}
