// A fast path for the most common blocklist entry, a dotted-quad IPv4 address
// or CIDR in strict decimal ("192.0.2.1", "198.51.100.0/24"): one pass over
// the characters, no regular expressions, no intermediate strings. It accepts
// exactly a subset of what common/src/cidr.ts's parseCidr accepts and returns
// the same prefix; anything else (IPv6, leading zeros, host bits set, any
// error) returns null, and the caller takes the general path, so every
// decision and every message stays parseCidr's. Checked against parseCidr by
// test/common/blocklist-fast-ipv4.test.ts. Pure.
import type { Prefix } from '../cidr.js';

const ZERO = 48;
const NINE = 57;
const DOT = 46;
const SLASH = 47;

/**
 * The prefix `text[start, end)` spells as one number, address * 64 + length
 * (ordered as the prefixes: by address, then length), or -1 if it is not a
 * plain IPv4 address or CIDR. No allocation: a million-line list is read
 * without a Prefix per line (v4KeyPrefix makes one).
 */
export function fastIpv4Key(text: string, start = 0, end = text.length): number {
  let i = start;
  let addr = 0;
  for (let octet = 0; octet < 4; octet++) {
    if (octet > 0) {
      if (i >= end || text.charCodeAt(i) !== DOT) return -1;
      i++;
    }
    const first = i;
    let v = 0;
    while (i < end) {
      const c = text.charCodeAt(i);
      if (c < ZERO || c > NINE) break;
      v = v * 10 + (c - ZERO);
      i++;
      if (i - first > 3) return -1;
    }
    const digits = i - first;
    if (digits === 0 || v > 255 || (digits > 1 && text.charCodeAt(first) === ZERO)) return -1;
    addr = addr * 256 + v;
  }
  let len = 32;
  if (i < end) {
    if (text.charCodeAt(i) !== SLASH) return -1;
    i++;
    const first = i;
    len = 0;
    while (i < end) {
      const c = text.charCodeAt(i);
      if (c < ZERO || c > NINE) return -1;
      len = len * 10 + (c - ZERO);
      i++;
      if (i - first > 2) return -1;
    }
    const digits = i - first;
    if (digits === 0 || len > 32 || (digits > 1 && text.charCodeAt(first) === ZERO)) return -1;
  }
  // Host bits set: the general path reports it (or masks it, by policy).
  if (len < 32 && addr % 2 ** (32 - len) !== 0) return -1;
  return addr * 64 + len;
}

/** The address (u32) of a key of fastIpv4Key. */
export function v4KeyAddress(key: number): number {
  return (key - (key % 64)) / 64;
}

/** The prefix of a key of fastIpv4Key. */
export function v4KeyPrefix(key: number): Prefix {
  const len = key % 64;
  const addr = (key - len) / 64;
  const bytes = new Uint8Array(4);
  bytes[0] = addr >>> 24;
  bytes[1] = (addr >>> 16) & 255;
  bytes[2] = (addr >>> 8) & 255;
  bytes[3] = addr & 255;
  return { family: 4, bytes, len };
}

/** The prefix `text[start, end)` spells, or null if it is not a plain IPv4 address or CIDR. */
export function fastIpv4Prefix(text: string, start = 0, end = text.length): Prefix | null {
  const k = fastIpv4Key(text, start, end);
  return k < 0 ? null : v4KeyPrefix(k);
}
