// Rule records: one index r per rule the agent knows (desired, journaled or
// both), its attributes in typed-array columns (no object per rule), an
// index by id, and a free list. Only the rule table writes them; everything
// else reads them through RuleView.

import type { OpBatch, TableIndex } from '../datapath/datapath.js';
import { growF64, growI32, growU8 } from './grow.js';
import { NumIndex } from './num-index.js';
import { v4Word } from './prefix-key.js';
import {
  F_ALLOW,
  F_ATTRS,
  F_DESIRED,
  F_EGRESS,
  F_JOURNALED,
  F_MONITOR,
  F_V6,
  NONE,
  type RuleSpec,
  attrsOfFlags,
  tableOfFlags,
} from './rule-flags.js';

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** The rule columns as their readers see them (read only). */
export interface RuleView {
  /** Records [0, high) may be in use (see isLive). */
  readonly high: number;
  readonly id: ArrayLike<bigint>;
  /** rule-flags.ts: F_V6 ... F_SEEN. */
  readonly flags: ArrayLike<number>;
  /** Counter slot of a journaled rule, -1 otherwise. */
  readonly slot: ArrayLike<number>;
  /** Next record of the same prefix record (a prefix's desired rules are a list), -1 at the end. */
  readonly next: ArrayLike<number>;
  /** Record index of rule `id`, or -1. */
  find(id: bigint): number;
  idOf(r: number): bigint;
  /** Desired or journaled. */
  isLive(r: number): boolean;
  /** Expiry of rule r (Unix ms), 0 = never. */
  expireOf(r: number): number;
}

export class RuleRecords implements RuleView {
  private cap = 0;
  high = 0;
  id: BigUint64Array = new BigUint64Array(0);
  /** IPv4 rules: the address as a u32 (network order value). */
  addr4: Uint32Array = new Uint32Array(0);
  /** IPv6 rules: the 16 address bytes (few rules are IPv6; no 16 bytes per rule). */
  readonly addr6 = new Map<number, Uint8Array>();
  len: Uint8Array = new Uint8Array(0);
  flags: Uint8Array = new Uint8Array(0);
  /** Expiry (Unix ms) per rule; allocated when the first rule with an expiry arrives. */
  private expire: Float64Array = new Float64Array(0);
  slot: Int32Array = new Int32Array(0);
  /** The prefix record a desired rule is linked into, -1 otherwise. */
  pfx: Int32Array = new Int32Array(0);
  next: Int32Array = new Int32Array(0);
  private free: Int32Array = new Int32Array(0);
  private freeTop = 0;
  private readonly idIndex = new NumIndex();
  private readonly bigIds = new Map<bigint, number>();

  constructor(expected: number) {
    this.grow(expected);
  }

  /** Makes room for `n` records at once. */
  reserve(n: number): void {
    if (n > this.cap) this.grow(n);
    this.idIndex.reserve(n);
  }

  private grow(n: number): void {
    const cap = Math.max(n, Math.ceil(this.cap * 1.5));
    const id = new BigUint64Array(cap);
    id.set(this.id);
    this.id = id;
    const a4 = new Uint32Array(cap);
    a4.set(this.addr4);
    this.addr4 = a4;
    this.len = growU8(this.len, cap);
    this.flags = growU8(this.flags, cap);
    if (this.expire.length > 0) this.expire = growF64(this.expire, cap);
    this.slot = growI32(this.slot, cap, NONE);
    this.pfx = growI32(this.pfx, cap, NONE);
    this.next = growI32(this.next, cap, NONE);
    this.cap = cap;
  }

  find(id: bigint): number {
    if (id <= MAX_SAFE) return this.idIndex.get(Number(id));
    return this.bigIds.get(id) ?? NONE;
  }

  idOf(r: number): bigint {
    return this.id[r]!;
  }

  /** A new record for rule `id` (no flags, no slot, unlinked). */
  alloc(id: bigint): number {
    let r: number;
    if (this.freeTop > 0) r = this.free[--this.freeTop]!;
    else {
      if (this.high >= this.cap) this.grow(this.high + 1);
      r = this.high++;
    }
    this.id[r] = id;
    this.flags[r] = 0;
    this.slot[r] = NONE;
    this.pfx[r] = NONE;
    this.next[r] = NONE;
    if (this.expire.length > 0) this.expire[r] = 0;
    if (id <= MAX_SAFE) this.idIndex.set(Number(id), r);
    else this.bigIds.set(id, r);
    return r;
  }

  /** Returns a record that is neither desired nor journaled to the free list. */
  release(r: number): void {
    const id = this.id[r]!;
    if (id <= MAX_SAFE) this.idIndex.delete(Number(id));
    else this.bigIds.delete(id);
    this.flags[r] = 0;
    this.slot[r] = NONE;
    this.pfx[r] = NONE;
    this.addr6.delete(r);
    if (this.freeTop === this.free.length) this.free = growI32(this.free, Math.max(64, this.free.length * 2), 0);
    this.free[this.freeTop++] = r;
  }

  isLive(r: number): boolean {
    return (this.flags[r]! & (F_DESIRED | F_JOURNALED)) !== 0;
  }

  /** Writes attributes: flags F_V6/F_EGRESS/F_ALLOW/F_MONITOR, address bytes at src[off..off+16|4). */
  writeAttrs(r: number, attrs: number, src: Uint8Array, off: number, len: number, expire: number): void {
    this.flags[r] = (this.flags[r]! & ~F_ATTRS) | attrs;
    if ((attrs & F_V6) !== 0) {
      this.addr6.set(r, src.slice(off, off + 16));
      this.addr4[r] = 0;
    } else {
      this.addr6.delete(r);
      this.addr4[r] = v4Word(src, off);
    }
    this.len[r] = len;
    if (expire !== 0 && this.expire.length === 0) this.expire = new Float64Array(this.cap);
    if (this.expire.length > 0) this.expire[r] = expire;
  }

  /** True if rule r already has these attributes. */
  sameAttrs(r: number, attrs: number, src: Uint8Array, off: number, len: number, expire: number): boolean {
    if ((this.flags[r]! & F_ATTRS) !== attrs || this.len[r] !== len || this.expireOf(r) !== expire) return false;
    if ((attrs & F_V6) === 0) return this.addr4[r] === v4Word(src, off);
    const a = this.addr6.get(r)!;
    for (let i = 0; i < 16; i++) if (a[i] !== src[off + i]) return false;
    return true;
  }

  expireOf(r: number): number {
    return this.expire.length > 0 ? this.expire[r]! : 0;
  }

  /** A copy of rule r's address bytes (4 or 16). */
  addrBytes(r: number): Uint8Array {
    if ((this.flags[r]! & F_V6) !== 0) return new Uint8Array(this.addr6.get(r)!);
    const w = this.addr4[r]!;
    return new Uint8Array([w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255]);
  }

  /** Appends a journal.upsert of rule r's current attributes with counter slot `slot`. */
  writeJournalUpsert(out: OpBatch, r: number, slot: number): void {
    const f = this.flags[r]!;
    const table = tableOfFlags(f) as TableIndex;
    if ((f & F_V6) === 0) out.journalUpsert(this.id[r]!, table, this.addr4[r]!, 0, this.len[r]!, attrsOfFlags(f), slot, this.expireOf(r));
    else out.journalUpsert(this.id[r]!, table, this.addr6.get(r)!, 0, this.len[r]!, attrsOfFlags(f), slot, this.expireOf(r));
  }

  /** Rule r's current attributes as a RuleSpec (tests and diagnostics; allocates). */
  spec(r: number): RuleSpec {
    const f = this.flags[r]!;
    return {
      id: this.id[r]!,
      direction: (f & F_EGRESS) !== 0 ? 'egress' : 'ingress',
      prefix: { family: (f & F_V6) !== 0 ? 6 : 4, bytes: this.addrBytes(r), len: this.len[r]! },
      action: (f & F_ALLOW) !== 0 ? 'allow' : 'deny',
      mode: (f & F_MONITOR) !== 0 ? 'monitor' : 'enforce',
      expireUnixMs: this.expireOf(r),
    };
  }
}
