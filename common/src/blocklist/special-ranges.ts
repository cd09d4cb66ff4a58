// Special-purpose address ranges (RFC 6890 and the IANA special-purpose
// registries, plus multicast: the usual "bogon" set) and which of them are
// local to a network: private, shared (CGN), loopback, link-local,
// unspecified / "this network". A deny list that names a local range would
// cut the fleet off from its own networks; the import skips such lines unless
// told to allow them. Documentation, benchmarking, multicast and reserved
// ranges are special but NOT local (tests and docs block 203.0.113.0/24).
// Pure.
import { formatPrefix, type Prefix, parseCidr, prefixContains, unmapPrefix } from '../cidr.js';

export type SpecialKind =
  | 'this-network'
  | 'unspecified'
  | 'private'
  | 'shared'
  | 'loopback'
  | 'link-local'
  | 'unique-local'
  | 'protocol-assignments'
  | 'documentation'
  | 'benchmarking'
  | 'multicast'
  | 'reserved'
  | 'broadcast'
  | 'ipv4-mapped'
  | 'translation'
  | 'discard-only';

/** The kinds a deny list should not name without being told: the fleet's own networks. */
export const LOCAL_KINDS: ReadonlySet<SpecialKind> = new Set([
  'this-network',
  'unspecified',
  'private',
  'shared',
  'loopback',
  'link-local',
  'unique-local',
]);

export interface SpecialRange {
  /** Canonical text (formatPrefix): ::ffff:0:0/96 is shown as ::ffff:0.0.0.0/96. */
  readonly cidr: string;
  readonly prefix: Prefix;
  readonly kind: SpecialKind;
  readonly name: string;
  readonly rfc: string;
  /** Private, shared, loopback, link-local or unspecified/this network (LOCAL_KINDS). */
  readonly local: boolean;
}

const TABLE: ReadonlyArray<readonly [string, SpecialKind, string, string]> = [
  ['0.0.0.0/8', 'this-network', '"this network"', 'RFC 791, RFC 1122'],
  ['10.0.0.0/8', 'private', 'private-use', 'RFC 1918'],
  ['100.64.0.0/10', 'shared', 'shared address space (carrier-grade NAT)', 'RFC 6598'],
  ['127.0.0.0/8', 'loopback', 'loopback', 'RFC 1122'],
  ['169.254.0.0/16', 'link-local', 'link-local', 'RFC 3927'],
  ['172.16.0.0/12', 'private', 'private-use', 'RFC 1918'],
  ['192.0.0.0/24', 'protocol-assignments', 'IETF protocol assignments', 'RFC 6890'],
  ['192.0.2.0/24', 'documentation', 'documentation (TEST-NET-1)', 'RFC 5737'],
  ['192.168.0.0/16', 'private', 'private-use', 'RFC 1918'],
  ['198.18.0.0/15', 'benchmarking', 'benchmarking', 'RFC 2544'],
  ['198.51.100.0/24', 'documentation', 'documentation (TEST-NET-2)', 'RFC 5737'],
  ['203.0.113.0/24', 'documentation', 'documentation (TEST-NET-3)', 'RFC 5737'],
  ['224.0.0.0/4', 'multicast', 'multicast', 'RFC 5771'],
  ['240.0.0.0/4', 'reserved', 'reserved for future use', 'RFC 1112'],
  ['255.255.255.255/32', 'broadcast', 'limited broadcast', 'RFC 919, RFC 8190'],
  ['::/128', 'unspecified', 'unspecified address', 'RFC 4291'],
  ['::1/128', 'loopback', 'loopback', 'RFC 4291'],
  ['::ffff:0:0/96', 'ipv4-mapped', 'IPv4-mapped addresses', 'RFC 4291'],
  ['64:ff9b::/96', 'translation', 'IPv4/IPv6 translation (NAT64)', 'RFC 6052'],
  ['64:ff9b:1::/48', 'translation', 'local-use IPv4/IPv6 translation', 'RFC 8215'],
  ['100::/64', 'discard-only', 'discard-only', 'RFC 6666'],
  ['2001::/23', 'protocol-assignments', 'IETF protocol assignments', 'RFC 2928'],
  ['2001:2::/48', 'benchmarking', 'benchmarking', 'RFC 5180'],
  ['2001:db8::/32', 'documentation', 'documentation', 'RFC 3849'],
  ['3fff::/20', 'documentation', 'documentation', 'RFC 9637'],
  ['fc00::/7', 'unique-local', 'unique local addresses', 'RFC 4193'],
  ['fe80::/10', 'link-local', 'link-local unicast', 'RFC 4291'],
  ['fec0::/10', 'reserved', 'deprecated site-local', 'RFC 3879'],
  ['ff00::/8', 'multicast', 'multicast', 'RFC 4291'],
];

export const SPECIAL_RANGES: readonly SpecialRange[] = TABLE.map(([cidr, kind, name, rfc]) => {
  const prefix = parseCidr(cidr, { unmap: false });
  return { cidr: formatPrefix(prefix), prefix, kind, name, rfc, local: LOCAL_KINDS.has(kind) };
});

export interface SpecialOverlap {
  readonly range: SpecialRange;
  /** `within`: the prefix is inside the range (or is it); `covers`: the prefix is larger and contains the range. */
  readonly relation: 'within' | 'covers';
}

/**
 * Every special range `p` overlaps, in table order. An IPv4-mapped prefix
 * (::ffff:a.b.c.d/n, n >= 96) is classified as its IPv4 form.
 */
export function specialOverlaps(p: Prefix): SpecialOverlap[] {
  const q = unmapPrefix(p) ?? p;
  const out: SpecialOverlap[] = [];
  for (const range of SPECIAL_RANGES) {
    if (prefixContains(range.prefix, q)) out.push({ range, relation: 'within' });
    else if (prefixContains(q, range.prefix)) out.push({ range, relation: 'covers' });
  }
  return out;
}

/** The local (private, shared, loopback, link-local, unspecified/this network) ranges `p` overlaps; empty if none. */
export function localOverlaps(p: Prefix): SpecialOverlap[] {
  return specialOverlaps(p).filter((o) => o.range.local);
}

/** The local IPv4 ranges: network (u32) and length, for hasLocalOverlapV4. */
const LOCAL_V4 = SPECIAL_RANGES.filter((r) => r.local && r.prefix.family === 4);
const LOCAL_V4_NET = Uint32Array.from(
  LOCAL_V4,
  (r) => ((r.prefix.bytes[0]! << 24) | (r.prefix.bytes[1]! << 16) | (r.prefix.bytes[2]! << 8) | r.prefix.bytes[3]!) >>> 0,
);
const LOCAL_V4_LEN = Uint8Array.from(LOCAL_V4, (r) => r.prefix.len);

/** hasLocalOverlap of the IPv4 prefix `addr`/`len` (addr a u32), with integer arithmetic only. */
export function hasLocalOverlapV4(addr: number, len: number): boolean {
  for (let i = 0; i < LOCAL_V4_NET.length; i++) {
    const m = Math.min(LOCAL_V4_LEN[i]!, len);
    if (m === 0 || addr >>> (32 - m) === LOCAL_V4_NET[i]! >>> (32 - m)) return true;
  }
  return false;
}

/**
 * True if `p` overlaps a local range: `localOverlaps(p).length > 0`, without
 * building the list (IPv4 is checked with integer arithmetic; a million-line
 * list is checked in milliseconds). Ask localOverlaps for the details.
 */
export function hasLocalOverlap(p: Prefix): boolean {
  if (p.family !== 4) return localOverlaps(p).length > 0;
  return hasLocalOverlapV4(((p.bytes[0]! << 24) | (p.bytes[1]! << 16) | (p.bytes[2]! << 8) | p.bytes[3]!) >>> 0, p.len);
}
