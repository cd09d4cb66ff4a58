// Prefix records: one index p per kernel (table, prefix) the agent knows,
// because a desired rule has that prefix or the kernel holds an entry for
// it. Columns in typed arrays, an index by prefix key (a number for IPv4, an
// 18-character string for IPv6: prefix-key.ts), a free list, and the head of
// the list of desired rules at the prefix (RuleRecords.next links the rest).
// Only the rule table writes them; readers see PrefixView.

import type { OpBatch, TableIndex } from '../datapath/datapath.js';
import { growF64, growI32, growU8 } from './grow.js';
import { NumIndex } from './num-index.js';
import { type TableId, mask16, v4Key, v4KeyWord, v4Mask, v4Word, v6Key, v6KeyBytes } from './prefix-key.js';
import { NONE } from './rule-flags.js';

/** pTable of a free record. */
const FREE_TABLE = 255;

/** The prefix columns as their readers see them (read only). */
export interface PrefixView {
  /** Records [0, high) may be in use (see live). */
  readonly high: number;
  /** Kernel table (TableId) of each record. */
  readonly table: ArrayLike<number>;
  readonly len: ArrayLike<number>;
  /** First desired rule record at the prefix, -1 if none. */
  readonly head: ArrayLike<number>;
  live(p: number): boolean;
  /** An IPv4 record's address word (masked). */
  v4Word(p: number): number;
  /** A copy of an IPv6 record's 16 address bytes (masked). */
  v6Bytes(p: number): Uint8Array;
  /** The record of an IPv4 (table, masked word, len), or -1. */
  lookupV4(t: TableId, word: number, len: number): number;
  /** The record of an IPv6 (table, masked bytes, len), or -1. */
  lookupV6(t: TableId, masked: Uint8Array, len: number): number;
  /** True if prefix `inner` lies within `outer` (same table, outer.len <= inner.len). */
  contains(outer: number, inner: number): boolean;
}

export class PrefixRecords implements PrefixView {
  private cap = 0;
  high = 0;
  /** IPv4 records: v4Key(table, word, len). */
  private key: Float64Array = new Float64Array(0);
  /** IPv6 records: v6Key(table, bytes, len). */
  private readonly keyV6 = new Map<number, string>();
  table: Uint8Array = new Uint8Array(0);
  len: Uint8Array = new Uint8Array(0);
  head: Int32Array = new Int32Array(0);
  private free: Int32Array = new Int32Array(0);
  private freeTop = 0;
  private readonly v4Index = new NumIndex();
  private readonly v6Index = new Map<string, number>();
  /** Scratch: an IPv6 record's address bytes. */
  private readonly tmp16 = new Uint8Array(16);

  constructor(expected: number) {
    this.grow(expected);
  }

  /** Makes room for `n` records at once. */
  reserve(n: number): void {
    if (n > this.cap) this.grow(n);
    this.v4Index.reserve(n);
  }

  private grow(n: number): void {
    const cap = Math.max(n, Math.ceil(this.cap * 1.5));
    this.key = growF64(this.key, cap);
    const pt = new Uint8Array(cap).fill(FREE_TABLE);
    pt.set(this.table);
    this.table = pt;
    this.len = growU8(this.len, cap);
    this.head = growI32(this.head, cap, NONE);
    this.cap = cap;
  }

  private alloc(t: TableId, len: number): number {
    let p: number;
    if (this.freeTop > 0) p = this.free[--this.freeTop]!;
    else {
      if (this.high >= this.cap) this.grow(this.high + 1);
      p = this.high++;
    }
    this.table[p] = t;
    this.len[p] = len;
    this.head[p] = NONE;
    return p;
  }

  /** The record of (t, address bytes at `offset` with host bits clear, len), created if missing. */
  findOrCreate(t: TableId, bytes: Uint8Array, offset: number, len: number): number {
    if ((t & 1) === 0) return this.findOrCreateV4(t, v4Word(bytes, offset), len);
    const key = v6Key(t, bytes, len, offset);
    const p = this.v6Index.get(key);
    if (p !== undefined) return p;
    const np = this.alloc(t, len);
    this.keyV6.set(np, key);
    this.v6Index.set(key, np);
    return np;
  }

  /** The IPv4 record of (t, masked word, len), created if missing. */
  findOrCreateV4(t: TableId, word: number, len: number): number {
    const key = v4Key(t, word, len);
    const p = this.v4Index.get(key);
    if (p !== NONE) return p;
    const np = this.alloc(t, len);
    this.key[np] = key;
    this.v4Index.set(key, np);
    return np;
  }

  /** The record of op i's prefix (table, address, length; masked here), created if missing. */
  findOrCreateOfOp(b: OpBatch, i: number): number {
    const t = b.table[i]! as TableId;
    const len = b.len[i]!;
    return (t & 1) === 0 ? this.findOrCreateV4(t, (b.addr4[i]! & v4Mask(len)) >>> 0, len) : this.findOrCreate(t, b.addr6, i * 16, len);
  }

  /** The record of op i's prefix (table, address, length; masked here), or -1. */
  ofOp(b: OpBatch, i: number): number {
    const t = b.table[i]! as TableId;
    const len = b.len[i]!;
    if ((t & 1) === 0) return this.v4Index.get(v4Key(t, (b.addr4[i]! & v4Mask(len)) >>> 0, len));
    return this.v6Index.get(v6Key(t, b.addr6, len, i * 16)) ?? NONE;
  }

  lookupV4(t: TableId, word: number, len: number): number {
    return this.v4Index.get(v4Key(t, word, len));
  }

  lookupV6(t: TableId, masked: Uint8Array, len: number): number {
    return this.v6Index.get(v6Key(t, masked, len)) ?? NONE;
  }

  /** Returns a record with no desired rule and no kernel entry (the caller checked) to the free list. */
  release(p: number): void {
    const t = this.table[p] as TableId;
    if ((t & 1) === 0) this.v4Index.delete(this.key[p]!);
    else {
      const k = this.keyV6.get(p)!;
      this.v6Index.delete(k);
      this.keyV6.delete(p);
    }
    this.table[p] = FREE_TABLE;
    if (this.freeTop === this.free.length) this.free = growI32(this.free, Math.max(64, this.free.length * 2), 0);
    this.free[this.freeTop++] = p;
  }

  live(p: number): boolean {
    return this.table[p] !== FREE_TABLE;
  }

  v4Word(p: number): number {
    return v4KeyWord(this.key[p]!);
  }

  v6Bytes(p: number): Uint8Array {
    return v6KeyBytes(this.keyV6.get(p)!);
  }

  contains(outer: number, inner: number): boolean {
    const t = this.table[outer]!;
    if (this.table[inner] !== t) return false;
    const ol = this.len[outer]!;
    if (ol > this.len[inner]!) return false;
    if ((t & 1) === 0) return (v4KeyWord(this.key[inner]!) & v4Mask(ol)) >>> 0 === v4KeyWord(this.key[outer]!);
    const ok = this.keyV6.get(outer)!;
    const masked = mask16(v6KeyBytes(this.keyV6.get(inner)!), ol);
    for (let i = 0; i < 16; i++) if (masked[i] !== ok.charCodeAt(2 + i)) return false;
    return true;
  }

  /** Appends an entry.upsert of record p with packed entry `packed` (packEntry). */
  writeEntryUpsert(out: OpBatch, p: number, packed: number): void {
    const t = this.table[p]! as TableIndex;
    if ((t & 1) === 0) out.entryUpsert(t, v4KeyWord(this.key[p]!), 0, this.len[p]!, packed & 3, packed >>> 2);
    else out.entryUpsert(t, this.v6KeyInto(p), 0, this.len[p]!, packed & 3, packed >>> 2);
  }

  /** Appends an entry.delete of record p. */
  writeEntryDelete(out: OpBatch, p: number): void {
    const t = this.table[p]! as TableIndex;
    if ((t & 1) === 0) out.entryDelete(t, v4KeyWord(this.key[p]!), 0, this.len[p]!);
    else out.entryDelete(t, this.v6KeyInto(p), 0, this.len[p]!);
  }

  /** An IPv6 record's address bytes in a scratch buffer (valid until the next call). */
  private v6KeyInto(p: number): Uint8Array {
    const k = this.keyV6.get(p)!;
    const out = this.tmp16;
    for (let i = 0; i < 16; i++) out[i] = k.charCodeAt(2 + i);
    return out;
  }
}
