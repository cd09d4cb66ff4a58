// IPv4-mapped IPv6 (::ffff:a.b.c.d, RFC 4291 2.5.5.2) read as IPv4, as Go's
// netip.Addr.Unmap does: dual-stack software logs IPv4 clients this way, and
// the data path sees those clients as IPv4 packets. Pure.
import type { Address, Prefix } from '../cidr.js';

function isMapped(bytes: Uint8Array): boolean {
  if (bytes.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** The IPv4 address for ::ffff:a.b.c.d, or null if `a` is not IPv4-mapped. */
export function unmapAddress(a: Address): Address | null {
  return a.family === 6 && isMapped(a.bytes) ? { family: 4, bytes: a.bytes.slice(12) } : null;
}

/**
 * The IPv4 prefix for ::ffff:a.b.c.d/n with n >= 96 (length n - 96), or null.
 * Shorter prefixes cover more than the mapped block and stay IPv6.
 * Note ::ffff:0:0/96 itself is every IPv4 address: 0.0.0.0/0.
 */
export function unmapPrefix(p: Prefix): Prefix | null {
  return p.family === 6 && p.len >= 96 && isMapped(p.bytes) ? { family: 4, bytes: p.bytes.slice(12), len: p.len - 96 } : null;
}
