// The lockout guard's protected set as a value (pure, no I/O): prefixes
// that no deny may cover (the control plane's own addresses, the addresses
// its agents connect from, management networks, loopback), each with why it
// is protected, and the one question the guard asks of it: which protected
// entry, if any, does a deny of this prefix overlap?
//
// Two prefixes overlap iff they agree on the bits of the shorter one: the
// deny covers the entry (entry inside the deny) or lies inside it (a deny of
// part of a management network). Per family, the entries are kept sorted by
// first address, so "an entry starting inside the deny" is one binary search,
// and "an entry containing the deny" is one exact look-up per prefix length
// present: a million-line import asks this per line.
import { type Family, formatPrefix, type Prefix } from '../../../common/src/cidr.js';

export type ProtectedKind = 'loopback' | 'listen' | 'agent' | 'management';

export interface ProtectedEntry {
  readonly prefix: Prefix;
  /** Canonical CIDR ("192.0.2.1/32"). */
  readonly cidr: string;
  readonly kind: ProtectedKind;
  /** Why, in words: "loopback, always protected", "the address node web-1 connects from". */
  readonly why: string;
}

export function protectedEntry(prefix: Prefix, kind: ProtectedKind, why: string): ProtectedEntry {
  return Object.freeze({ prefix, cidr: formatPrefix(prefix), kind, why });
}

/** First address of a prefix as a number (IPv4) or bigint (IPv6). */
type Key = number | bigint;

function keyOf(p: Prefix): Key {
  if (p.family === 4) return ((p.bytes[0]! << 24) | (p.bytes[1]! << 16) | (p.bytes[2]! << 8) | p.bytes[3]!) >>> 0;
  let k = 0n;
  for (let i = 0; i < 16; i++) k = (k << 8n) | BigInt(p.bytes[i]!);
  return k;
}

/** The first address of `k`'s prefix of length `len`. */
function maskKey(k: Key, len: number, family: Family): Key {
  if (family === 4) return len === 0 ? 0 : ((k as number) & (0xffffffff << (32 - len))) >>> 0;
  const host = BigInt(128 - len);
  return ((k as bigint) >> host) << host;
}

/** The last address of `k`'s prefix of length `len`. */
function lastKey(k: Key, len: number, family: Family): Key {
  // (JS shifts count mod 32: a /32 and a /0 are their own cases.)
  if (family === 4) return len === 32 ? k : len === 0 ? 0xffffffff : ((k as number) | (0xffffffff >>> len)) >>> 0;
  return (k as bigint) | ((1n << BigInt(128 - len)) - 1n);
}

class FamilyIndex {
  /** Entries sorted by first address. */
  private readonly starts: Key[];
  private readonly entries: ProtectedEntry[];
  /** Per prefix length present: first address -> entry. */
  private readonly byLen = new Map<number, Map<Key, ProtectedEntry>>();
  private readonly lens: number[];

  constructor(
    private readonly family: Family,
    entries: readonly ProtectedEntry[],
  ) {
    const keyed = entries.map((e) => ({ k: keyOf(e.prefix), e }));
    keyed.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : a.e.prefix.len - b.e.prefix.len));
    this.starts = keyed.map((x) => x.k);
    this.entries = keyed.map((x) => x.e);
    for (const { k, e } of keyed) {
      let m = this.byLen.get(e.prefix.len);
      if (!m) this.byLen.set(e.prefix.len, (m = new Map()));
      if (!m.has(k)) m.set(k, e);
    }
    this.lens = [...this.byLen.keys()].sort((a, b) => a - b);
  }

  find(p: Prefix): ProtectedEntry | undefined {
    return this.findKey(keyOf(p), p.len);
  }

  /** find() of the prefix whose first address is `k`. */
  findKey(k: Key, plen: number): ProtectedEntry | undefined {
    const first = maskKey(k, plen, this.family);
    const last = lastKey(k, plen, this.family);
    // An entry whose first address lies inside p overlaps it.
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! < first) lo = mid + 1;
      else hi = mid;
    }
    if (lo < this.starts.length && this.starts[lo]! <= last) return this.entries[lo];
    // An entry that starts before p and contains it.
    for (const len of this.lens) {
      if (len >= plen) break;
      const e = this.byLen.get(len)!.get(maskKey(k, len, this.family));
      if (e) return e;
    }
    return undefined;
  }
}

export class ProtectedSet {
  private readonly v4: FamilyIndex;
  private readonly v6: FamilyIndex;
  readonly entries: readonly ProtectedEntry[];

  constructor(entries: readonly ProtectedEntry[]) {
    this.entries = Object.freeze([...entries]);
    this.v4 = new FamilyIndex(
      4,
      entries.filter((e) => e.prefix.family === 4),
    );
    this.v6 = new FamilyIndex(
      6,
      entries.filter((e) => e.prefix.family === 6),
    );
  }

  /** A protected entry that `p` overlaps (covers, or lies inside), or undefined. */
  find(p: Prefix): ProtectedEntry | undefined {
    return (p.family === 4 ? this.v4 : this.v6).find(p);
  }

  /** find() of the IPv4 prefix `addr`/`len` (addr a u32, host bits zero), without a Prefix. */
  findV4(addr: number, len: number): ProtectedEntry | undefined {
    return this.v4.findKey(addr, len);
  }
}

/** True for a /0: every address of its family. */
export function isEverything(p: Prefix): boolean {
  return p.len === 0;
}

/** "IPv4" / "IPv6". */
export function familyName(p: Prefix): string {
  return `IPv${p.family}`;
}
