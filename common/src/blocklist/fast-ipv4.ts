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

/** The prefix `text[start, end)` spells, or null if it is not a plain IPv4 address or CIDR. */
export function fastIpv4Prefix(text: string, start = 0, end = text.length): Prefix | null {
  let i = start;
  let addr = 0;
  for (let octet = 0; octet < 4; octet++) {
    if (octet > 0) {
      if (i >= end || text.charCodeAt(i) !== DOT) return null;
      i++;
    }
    const first = i;
    let v = 0;
    while (i < end) {
      const c = text.charCodeAt(i);
      if (c < ZERO || c > NINE) break;
      v = v * 10 + (c - ZERO);
      i++;
      if (i - first > 3) return null;
    }
    const digits = i - first;
    if (digits === 0 || v > 255 || (digits > 1 && text.charCodeAt(first) === ZERO)) return null;
    addr = addr * 256 + v;
  }
  let len = 32;
  if (i < end) {
    if (text.charCodeAt(i) !== SLASH) return null;
    i++;
    const first = i;
    len = 0;
    while (i < end) {
      const c = text.charCodeAt(i);
      if (c < ZERO || c > NINE) return null;
      len = len * 10 + (c - ZERO);
      i++;
      if (i - first > 2) return null;
    }
    const digits = i - first;
    if (digits === 0 || len > 32 || (digits > 1 && text.charCodeAt(first) === ZERO)) return null;
  }
  // Host bits set: the general path reports it (or masks it, by policy).
  if (len < 32 && addr % 2 ** (32 - len) !== 0) return null;
  const bytes = new Uint8Array(4);
  bytes[0] = addr >>> 24;
  bytes[1] = (addr >>> 16) & 255;
  bytes[2] = (addr >>> 8) & 255;
  bytes[3] = addr & 255;
  return { family: 4, bytes, len };
}
