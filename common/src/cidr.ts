// IP addresses and CIDR prefixes as bytes: parsing, canonical form, containment.
// Pure, no I/O. The one place that decides what a valid CIDR is.
//
// IPv4-mapped IPv6 (::ffff:a.b.c.d, RFC 4291 2.5.5.2) is read as the IPv4
// address, as Go's netip.Addr.Unmap does: the data path sees those clients as
// IPv4 packets, so a rule for ::ffff:192.0.2.1 is the rule for 192.0.2.1/32
// (and ::ffff:192.0.2.0/120 the one for 192.0.2.0/24). Prefixes shorter than
// /96 cover more than the mapped block and stay IPv6. `{ unmap: false }`
// reads them as written (the blocklist parser counts what it unmapped).
import { echo } from './echo.js';

export type Family = 4 | 6;

/** A prefix with host bits zero. `bytes` is 4 or 16 bytes, network order. */
export interface Prefix {
  readonly family: Family;
  readonly bytes: Uint8Array;
  readonly len: number;
}

export interface Address {
  readonly family: Family;
  readonly bytes: Uint8Array;
}

export type CidrErrorReason = 'INVALID_CIDR' | 'INVALID_ADDRESS' | 'HOST_BITS_SET';

export class CidrError extends Error {
  override readonly name = 'CidrError';
  constructor(
    readonly reason: CidrErrorReason,
    message: string,
    readonly input: string,
    /** For HOST_BITS_SET: the canonical form the caller probably meant. */
    readonly canonical?: string,
  ) {
    super(message);
  }
}

const MAX_LEN: Record<Family, number> = { 4: 32, 6: 128 };

export interface ParseOptions {
  /** Read IPv4-mapped IPv6 as IPv4 (default true). */
  readonly unmap?: boolean;
}

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

export function familyBits(family: Family): number {
  return MAX_LEN[family];
}

function parseV4(s: string): Uint8Array | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    // Decimal only; no leading zeros (010 would be octal to inet_aton).
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

function parseV6(s: string): Uint8Array | null {
  if (s.length === 0 || s.length > 45 || s.includes('%')) return null;
  let tail4: Uint8Array | null = null;
  let str = s;
  const lastColon = str.lastIndexOf(':');
  if (lastColon >= 0 && str.indexOf('.', lastColon) > lastColon) {
    tail4 = parseV4(str.slice(lastColon + 1));
    if (!tail4) return null;
    str = `${str.slice(0, lastColon + 1)}0:0`;
  }
  const dbl = str.indexOf('::');
  if (dbl !== str.lastIndexOf('::')) return null;
  const groups: number[] = [];
  const parseGroups = (part: string): number[] | null => {
    if (part === '') return [];
    const gs = part.split(':');
    const res: number[] = [];
    for (const g of gs) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      res.push(parseInt(g, 16));
    }
    return res;
  };
  if (dbl >= 0) {
    const head = parseGroups(str.slice(0, dbl));
    const tail = parseGroups(str.slice(dbl + 2));
    if (!head || !tail) return null;
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    groups.push(...head, ...new Array<number>(missing).fill(0), ...tail);
  } else {
    const all = parseGroups(str);
    if (all?.length !== 8) return null;
    groups.push(...all);
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[i * 2] = groups[i]! >> 8;
    out[i * 2 + 1] = groups[i]! & 0xff;
  }
  if (tail4) out.set(tail4, 12);
  return out;
}

/** Parses a bare IPv4 or IPv6 address (IPv4-mapped read as IPv4 unless `unmap: false`). Throws CidrError(INVALID_ADDRESS). */
export function parseAddress(input: string, opts: ParseOptions = {}): Address {
  const s = input.trim();
  const v4 = s.includes(':') ? null : parseV4(s);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = s.includes(':') ? parseV6(s) : null;
  if (v6) {
    const a: Address = { family: 6, bytes: v6 };
    return (opts.unmap !== false && unmapAddress(a)) || a;
  }
  throw new CidrError(
    'INVALID_ADDRESS',
    `${echo(input)} is not an IP address: expected IPv4 like 192.0.2.1 or IPv6 like 2001:db8::1`,
    input,
  );
}

/** Zeroes the bits after `len`. Returns a new array. */
export function maskBytes(bytes: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  maskInto(out, 0, bytes, 0, bytes.length, len);
  return out;
}

/**
 * Copies n address bytes from src[srcOff..] to dst[dstOff..] with the bits
 * after `len` cleared (in place when dst and src are one array at one offset).
 * The one prefix mask loop: for code that writes masked keys into buffers.
 */
export function maskInto(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, n: number, len: number): void {
  for (let i = 0; i < n; i++) {
    const keep = len - i * 8;
    dst[dstOff + i] = keep >= 8 ? src[srcOff + i]! : keep <= 0 ? 0 : src[srcOff + i]! & ((0xff << (8 - keep)) & 0xff);
  }
}

function hasHostBits(bytes: Uint8Array, len: number): boolean {
  const m = maskBytes(bytes, len);
  for (let i = 0; i < bytes.length; i++) if (m[i] !== bytes[i]) return true;
  return false;
}

/**
 * Parses "a.b.c.d/n", "x::y/n" or a bare address (= /32, /128); an
 * IPv4-mapped prefix of length 96 or more is read as IPv4 unless `unmap:
 * false`. Host bits set is an error naming the canonical form.
 */
export function parseCidr(input: string, opts: ParseOptions = {}): Prefix {
  const s = input.trim();
  const slash = s.indexOf('/');
  const addrPart = slash >= 0 ? s.slice(0, slash) : s;
  let addr: Address;
  try {
    addr = parseAddress(addrPart, { unmap: false });
  } catch {
    throw new CidrError(
      'INVALID_CIDR',
      `${echo(input)} is not a CIDR: expected an IPv4 or IPv6 address with an optional /prefix-length, like 203.0.113.0/24 or 2001:db8::/32`,
      input,
    );
  }
  const max = MAX_LEN[addr.family];
  let len = max;
  if (slash >= 0) {
    const lenPart = s.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lenPart) || Number(lenPart) > max) {
      throw new CidrError(
        'INVALID_CIDR',
        `${echo(input)} has an invalid prefix length ${echo(lenPart, 8)}: IPv${addr.family} prefix lengths are 0 to ${max}`,
        input,
      );
    }
    len = Number(lenPart);
  }
  let p: Prefix = { family: addr.family, bytes: addr.bytes, len };
  if (opts.unmap !== false) p = unmapPrefix(p) ?? p;
  if (hasHostBits(p.bytes, p.len)) {
    const canonical = formatPrefix({ family: p.family, bytes: maskBytes(p.bytes, p.len), len: p.len });
    throw new CidrError('HOST_BITS_SET', `${echo(input)} has host bits set after /${len}: did you mean ${canonical}?`, input, canonical);
  }
  return p;
}

function formatV4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952 text form: lowercase, longest run (>= 2) of zero groups as "::". */
function formatV6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[i * 2]! << 8) | b[i * 2 + 1]!);
  // IPv4-mapped ::ffff:a.b.c.d
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `::ffff:${formatV4(b.subarray(12))}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}

export function formatAddress(a: Address): string {
  return a.family === 4 ? formatV4(a.bytes) : formatV6(a.bytes);
}

/** Canonical CIDR text, always with the prefix length. */
export function formatPrefix(p: Prefix): string {
  return `${formatAddress(p)}/${p.len}`;
}

/** Canonicalizes user input: "10.0.0.1" -> "10.0.0.1/32", "::ffff:10.0.0.1" -> "10.0.0.1/32". Throws CidrError. */
export function canonicalCidr(input: string): string {
  return formatPrefix(parseCidr(input));
}

/** Builds a prefix from wire bytes, validating length and host bits. */
export function prefixFromBytes(bytes: Uint8Array, len: number): Prefix {
  const family: Family | null = bytes.length === 4 ? 4 : bytes.length === 16 ? 6 : null;
  if (family === null) {
    throw new CidrError('INVALID_CIDR', `address must be 4 or 16 bytes, got ${bytes.length}`, '');
  }
  if (!Number.isInteger(len) || len < 0 || len > MAX_LEN[family]) {
    throw new CidrError('INVALID_CIDR', `IPv${family} prefix length ${len} is out of range 0..${MAX_LEN[family]}`, '');
  }
  if (hasHostBits(bytes, len)) {
    const canonical = formatPrefix({ family, bytes: maskBytes(bytes, len), len });
    throw new CidrError('HOST_BITS_SET', `host bits set after /${len}: canonical form is ${canonical}`, '', canonical);
  }
  return { family, bytes: new Uint8Array(bytes), len };
}

/** True if `addr` lies inside `p` (same family). */
export function prefixContainsAddress(p: Prefix, addr: Address): boolean {
  if (p.family !== addr.family) return false;
  const full = p.len >> 3;
  for (let i = 0; i < full; i++) if (p.bytes[i] !== addr.bytes[i]) return false;
  const rem = p.len & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (p.bytes[full]! & mask) === (addr.bytes[full]! & mask);
}

/** True if `outer` contains every address of `inner` (outer.len <= inner.len). */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  return outer.family === inner.family && outer.len <= inner.len && prefixContainsAddress(outer, inner);
}

/** A stable map key for a prefix: "4:0a000000/8". */
export function prefixKey(p: Prefix): string {
  return `${p.family}:${Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength).toString('hex')}/${p.len}`;
}
