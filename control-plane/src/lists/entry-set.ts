// A list's set of prefixes, compact enough to diff a million entries in
// memory in milliseconds: IPv4 prefixes as numbers (address * 64 + length)
// in a sorted typed array, IPv6 (rare in lists) as canonical text in a Set.
// diffEntries() merges two sets in one pass. Pure.
import { fastIpv4Prefix } from '../../../common/src/blocklist/fast-ipv4.js';
import { canonicalCidr, formatPrefix, type Prefix } from '../../../common/src/cidr.js';

function v4Key(bytes: Uint8Array, len: number): number {
  return (((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0) * 64 + len;
}

/**
 * The key of "a.b.c.d/n" as Postgres prints an IPv4 cidr (always with its
 * length, no leading zeros), read without allocating; -1 for anything else
 * (then the general path reads it).
 */
function storedV4Key(t: string, start: number, end: number): number {
  let addr = 0;
  let v = 0;
  let dots = 0;
  let i = start;
  for (; i < end; i++) {
    const c = t.charCodeAt(i);
    if (c >= 48 && c <= 57) v = v * 10 + (c - 48);
    else if (c === 46 && dots < 3 && v <= 255 && i > start && t.charCodeAt(i - 1) !== 46) {
      addr = addr * 256 + v;
      v = 0;
      dots++;
    } else break;
  }
  if (dots !== 3 || i >= end || t.charCodeAt(i) !== 47 || v > 255 || t.charCodeAt(i - 1) === 46) return -1;
  addr = addr * 256 + v;
  let len = 0;
  if (i + 1 >= end) return -1;
  for (i++; i < end; i++) {
    const c = t.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
    len = len * 10 + (c - 48);
  }
  return len <= 32 ? addr * 64 + len : -1;
}

export function v4KeyCidr(key: number): string {
  const len = key % 64;
  const a = (key - len) / 64;
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/${len}`;
}

export class EntrySet {
  private v4 = new Float64Array(1024);
  private n4 = 0;
  private sealed = false;
  /** IPv6 prefixes, canonical text. */
  readonly v6 = new Set<string>();
  /** Entries added that were already in the set. */
  duplicates = 0;

  add(p: Prefix): void {
    if (p.family === 4) this.addKey(v4Key(p.bytes, p.len));
    else this.addV6(formatPrefix(p));
  }

  /** An IPv4 prefix as the blocklist parser's number (fastIpv4Key: address * 64 + length). */
  addV4Key(key: number): void {
    this.addKey(key);
  }

  /** A CIDR as Postgres prints it (the list's stored rules): text[start, end). */
  addStored(text: string, start = 0, end = text.length): void {
    const k = storedV4Key(text, start, end);
    if (k >= 0) this.addKey(k);
    else {
      const cidr = text.slice(start, end);
      const p = fastIpv4Prefix(cidr);
      if (p) this.addKey(v4Key(p.bytes, p.len));
      else this.addV6(canonicalCidr(cidr));
    }
  }

  private addV6(cidr: string): void {
    if (this.v6.has(cidr)) this.duplicates++;
    else this.v6.add(cidr);
  }

  private addKey(k: number): void {
    if (this.sealed) throw new Error('EntrySet: add after seal');
    if (this.n4 === this.v4.length) {
      const grown = new Float64Array(this.v4.length * 2);
      grown.set(this.v4);
      this.v4 = grown;
    }
    this.v4[this.n4++] = k;
  }

  /** Sorts and drops repeats; no adds after. */
  seal(): this {
    if (this.sealed) return this;
    this.sealed = true;
    const a = this.v4.subarray(0, this.n4);
    // Published lists are mostly sorted already: one pass instead of a sort then.
    let sorted = true;
    for (let i = 1; i < a.length; i++) {
      if (a[i]! < a[i - 1]!) {
        sorted = false;
        break;
      }
    }
    if (!sorted) a.sort();
    let w = 0;
    for (let i = 0; i < a.length; i++) {
      if (w > 0 && a[i] === a[w - 1]) {
        this.duplicates++;
        continue;
      }
      a[w++] = a[i]!;
    }
    this.n4 = w;
    this.v4 = a.subarray(0, w);
    return this;
  }

  get size(): number {
    return this.n4 + this.v6.size;
  }

  /** The sorted IPv4 keys (after seal). */
  keys4(): Float64Array {
    if (!this.sealed) throw new Error('EntrySet: keys4 before seal');
    return this.v4.subarray(0, this.n4);
  }

  /**
   * A new sealed set: this one without the given canonical CIDRs (as
   * diffEntries gives them); this one is left as it is.
   */
  without(cidrs: readonly string[]): EntrySet {
    const gone = new EntrySet();
    const v6 = new Set<string>();
    for (const c of cidrs) {
      const k = storedV4Key(c, 0, c.length);
      if (k >= 0) gone.addKey(k);
      else v6.add(c);
    }
    const drop = gone.seal().keys4();
    const keys = this.seal().keys4();
    const out = new EntrySet();
    out.v4 = new Float64Array(Math.max(1, keys.length));
    let j = 0;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      while (j < drop.length && drop[j]! < k) j++;
      if (j < drop.length && drop[j] === k) continue;
      out.v4[out.n4++] = k;
    }
    for (const c of this.v6) if (!v6.has(c)) out.v6.add(c);
    return out.seal();
  }

  /** Every prefix as canonical text (tests, small sets). */
  cidrs(): string[] {
    const out: string[] = [];
    for (const k of this.seal().keys4()) out.push(v4KeyCidr(k));
    for (const c of this.v6) out.push(c);
    return out;
  }
}

export interface EntryDiff {
  /** In `desired`, not in `current`: canonical CIDRs. */
  readonly added: string[];
  /** In `current`, not in `desired`. */
  readonly removed: string[];
}

/** What turns `current` into `desired`: one merge of the sorted IPv4 keys, a set difference for IPv6. */
export function diffEntries(current: EntrySet, desired: EntrySet): EntryDiff {
  const a = current.seal().keys4();
  const b = desired.seal().keys4();
  const added: string[] = [];
  const removed: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x === y) {
      i++;
      j++;
    } else if (x < y) {
      removed.push(v4KeyCidr(x));
      i++;
    } else {
      added.push(v4KeyCidr(y));
      j++;
    }
  }
  for (; i < a.length; i++) removed.push(v4KeyCidr(a[i]!));
  for (; j < b.length; j++) added.push(v4KeyCidr(b[j]!));
  for (const c of current.v6) if (!desired.v6.has(c)) removed.push(c);
  for (const c of desired.v6) if (!current.v6.has(c)) added.push(c);
  return { added, removed };
}
