// The agent's whole rule state in typed arrays (no object per rule):
//
//  - the DESIRED set: the latest full rule set from the control plane
//    (unexpired), indexed by id and by kernel prefix;
//  - the JOURNAL state: which rules are persisted next to the pins with which
//    counter slot (journaled rules whose desired version changed keep their
//    journaled version in a small shadow map until the change is applied);
//  - the KERNEL state: per prefix, the entry the kernel holds (action, mode,
//    slot), i.e. the actual state the planner diffs against;
//  - what changed since the last successful apply (the dirty scope).
//
// Only plan.ts reads the arrays directly; everything else goes through
// methods. Mutations of the desired side happen at once; the journal and
// kernel sides change only in commit() after the datapath applied a plan.

import type { Prefix } from '../../../common/src/cidr.js';
import type { RuleDirection } from '../../../common/src/policy.js';
import { ATTR_ALLOW, ATTR_MONITOR, type JournalRule, type KernelEntry, OP, type OpBatch, type TableIndex } from '../datapath/datapath.js';
import { NumIndex } from './num-index.js';
import {
  type TableId,
  tableDirection,
  tableOf,
  v4Key,
  v4KeyParts,
  v4Mask,
  v4Word,
  v6Key,
  v6KeyBytes,
  mask16,
  prefixOfV4,
} from './prefix-key.js';

/** A validated rule as the agent stores it (from the wire or the journal): a journal rule before it has a counter slot. */
export type RuleSpec = Omit<JournalRule, 'slot'>;

export const F_V6 = 1;
export const F_EGRESS = 2;
export const F_ALLOW = 4;
export const F_MONITOR = 8;
export const F_DESIRED = 16;
export const F_JOURNALED = 32;
export const F_SHADOW = 64;
export const F_SEEN = 128;
const F_ATTRS = F_V6 | F_EGRESS | F_ALLOW | F_MONITOR;

const NONE = -1;
const FREE_TABLE = 255;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Kernel entry packed in an int: slot * 4 + allow * 2 + monitor. */
export function packEntry(slot: number, allow: boolean, monitor: boolean): number {
  return slot * 4 + (allow ? 2 : 0) + (monitor ? 1 : 0);
}

/** OpBatch attrs (ATTR_ALLOW | ATTR_MONITOR) of rule flags. */
function attrsOfFlags(f: number): number {
  return ((f & F_ALLOW) !== 0 ? ATTR_ALLOW : 0) | ((f & F_MONITOR) !== 0 ? ATTR_MONITOR : 0);
}

/** Rule flags (F_V6 | F_EGRESS | F_ALLOW | F_MONITOR) of an op's table and attrs. */
function flagsOfOp(table: number, attrs: number): number {
  return (
    ((table & 1) !== 0 ? F_V6 : 0) |
    ((table & 2) !== 0 ? F_EGRESS : 0) |
    ((attrs & ATTR_ALLOW) !== 0 ? F_ALLOW : 0) |
    ((attrs & ATTR_MONITOR) !== 0 ? F_MONITOR : 0)
  );
}

/** The address word of an IPv4 prefix key (v4Key), without an object. */
function v4KeyWord(key: number): number {
  return ((key - (key % 64)) / 64) % 4294967296;
}

/** A journaled version of a rule that the desired side has since changed. */
interface ShadowVersion {
  readonly flags: number;
  readonly addr: Uint8Array;
  readonly len: number;
  readonly expire: number;
}

function growU8(a: Uint8Array, n: number): Uint8Array {
  const b = new Uint8Array(n);
  b.set(a);
  return b;
}
function growI32(a: Int32Array, n: number, fill: number): Int32Array {
  const b = new Int32Array(n);
  if (fill !== 0) b.fill(fill, a.length);
  b.set(a);
  return b;
}
function growF64(a: Float64Array, n: number): Float64Array {
  const b = new Float64Array(n);
  b.set(a);
  return b;
}

export class RuleTable {
  // ---- rules (index r) ----
  ruleCap = 0;
  rHigh = 0;
  id: BigUint64Array = new BigUint64Array(0);
  /** IPv4 rules: the address as a u32 (network order value). */
  addr4: Uint32Array = new Uint32Array(0);
  /** IPv6 rules: the 16 address bytes (few rules are IPv6; no 16 bytes per rule). */
  readonly addr6 = new Map<number, Uint8Array>();
  len: Uint8Array = new Uint8Array(0);
  flags: Uint8Array = new Uint8Array(0);
  /** Expiry (Unix ms) per rule; allocated when the first rule with an expiry arrives. */
  expire: Float64Array = new Float64Array(0);
  slot: Int32Array = new Int32Array(0);
  pfx: Int32Array = new Int32Array(0);
  next: Int32Array = new Int32Array(0);
  private rFree: Int32Array = new Int32Array(0);
  private rFreeTop = 0;
  private readonly idIndex = new NumIndex();
  private readonly bigIds = new Map<bigint, number>();
  readonly shadow = new Map<number, ShadowVersion>();

  // ---- prefixes (index p), one per kernel (table, prefix) ----
  pfxCap = 0;
  pHigh = 0;
  pKey: Float64Array = new Float64Array(0);
  readonly pKeyV6 = new Map<number, string>();
  pTable: Uint8Array = new Uint8Array(0);
  pLen: Uint8Array = new Uint8Array(0);
  pHead: Int32Array = new Int32Array(0);
  /** Kernel entry at this prefix (packEntry) or -1. */
  pKernel: Int32Array = new Int32Array(0);
  private pFree: Int32Array = new Int32Array(0);
  private pFreeTop = 0;
  private readonly v4Index = new NumIndex();
  private readonly v6Index = new Map<string, number>();

  /** Kernel entries per table. */
  readonly kernelCount = [0, 0, 0, 0];
  /** Desired allow rules per table and prefix length: [t * 129 + len]. */
  readonly allowLens = new Int32Array(4 * 129);

  private desiredN = 0;
  private journaledN = 0;

  // ---- dirty scope since the last successful apply ----
  dirtyAll = false;
  readonly dirtyRules = new Set<number>();
  readonly dirtyPfx = new Set<number>();
  /** Prefix records whose desired allow set changed: their contained denies need a look. */
  readonly dirtyAllowPfx = new Set<number>();

  /** Rules the control plane sent that cannot be applied: id -> reason. */
  readonly invalid = new Map<bigint, string>();

  private snapshotOpen = false;
  /** Scratch: an IPv4 address as bytes; an IPv6 key's bytes. */
  private readonly tmp4 = new Uint8Array(4);
  private readonly tmp16 = new Uint8Array(16);

  /** Called when a desired rule gets an expiry (Unix ms). */
  onExpiry: ((r: number, expireUnixMs: number) => void) | undefined;

  constructor(expectedRules = 1024) {
    this.growRules(Math.max(16, expectedRules));
    this.growPfx(Math.max(16, expectedRules));
  }

  // ------------------------------------------------------------------ sizes

  get desiredCount(): number {
    return this.desiredN;
  }
  get journaledCount(): number {
    return this.journaledN;
  }
  get kernelTotal(): number {
    return this.kernelCount[0]! + this.kernelCount[1]! + this.kernelCount[2]! + this.kernelCount[3]!;
  }
  get snapshotInProgress(): boolean {
    return this.snapshotOpen;
  }
  get hasPending(): boolean {
    return this.dirtyAll || this.dirtyRules.size > 0 || this.dirtyPfx.size > 0 || this.dirtyAllowPfx.size > 0;
  }

  /** Makes room for `n` rules (and prefixes) at once. */
  reserve(n: number): void {
    if (n > this.ruleCap) this.growRules(n);
    if (n > this.pfxCap) this.growPfx(n);
    this.idIndex.reserve(n);
    this.v4Index.reserve(n);
  }

  private growRules(n: number): void {
    const cap = Math.max(n, Math.ceil(this.ruleCap * 1.5));
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
    this.ruleCap = cap;
  }

  private growPfx(n: number): void {
    const cap = Math.max(n, Math.ceil(this.pfxCap * 1.5));
    this.pKey = growF64(this.pKey, cap);
    const pt = new Uint8Array(cap).fill(FREE_TABLE);
    pt.set(this.pTable);
    this.pTable = pt;
    this.pLen = growU8(this.pLen, cap);
    this.pHead = growI32(this.pHead, cap, NONE);
    this.pKernel = growI32(this.pKernel, cap, NONE);
    this.pfxCap = cap;
  }

  // ------------------------------------------------------------ rule records

  /** Record index of rule `id`, or -1. */
  find(id: bigint): number {
    if (id <= MAX_SAFE) return this.idIndex.get(Number(id));
    return this.bigIds.get(id) ?? NONE;
  }

  private allocRule(id: bigint): number {
    let r: number;
    if (this.rFreeTop > 0) r = this.rFree[--this.rFreeTop]!;
    else {
      if (this.rHigh >= this.ruleCap) this.growRules(this.rHigh + 1);
      r = this.rHigh++;
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

  /** Frees a record that is neither desired nor journaled. */
  freeRule(r: number): void {
    const id = this.id[r]!;
    if (id <= MAX_SAFE) this.idIndex.delete(Number(id));
    else this.bigIds.delete(id);
    this.flags[r] = 0;
    this.slot[r] = NONE;
    this.pfx[r] = NONE;
    this.shadow.delete(r);
    this.addr6.delete(r);
    this.dirtyRules.delete(r);
    if (this.rFreeTop === this.rFree.length) this.rFree = growI32(this.rFree, Math.max(64, this.rFree.length * 2), 0);
    this.rFree[this.rFreeTop++] = r;
  }

  isLive(r: number): boolean {
    return (this.flags[r]! & (F_DESIRED | F_JOURNALED)) !== 0;
  }

  /** Writes attributes: flags F_V6/F_EGRESS/F_ALLOW/F_MONITOR, address bytes at src[off..off+16|4). */
  private writeAttrs(r: number, attrs: number, src: Uint8Array, off: number, len: number, expire: number): void {
    this.flags[r] = (this.flags[r]! & ~F_ATTRS) | attrs;
    if ((attrs & F_V6) !== 0) {
      this.addr6.set(r, src.slice(off, off + 16));
      this.addr4[r] = 0;
    } else {
      this.addr6.delete(r);
      this.addr4[r] = v4Word(src, off);
    }
    this.len[r] = len;
    if (expire !== 0 && this.expire.length === 0) this.expire = new Float64Array(this.ruleCap);
    if (this.expire.length > 0) this.expire[r] = expire;
  }

  /** Expiry of rule r (Unix ms), 0 = never. */
  expireOf(r: number): number {
    return this.expire.length > 0 ? this.expire[r]! : 0;
  }

  /** A copy of rule r's address bytes (4 or 16). */
  addrBytes(r: number): Uint8Array {
    if ((this.flags[r]! & F_V6) !== 0) return new Uint8Array(this.addr6.get(r)!);
    const w = this.addr4[r]!;
    return new Uint8Array([w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255]);
  }

  private sameAttrs(r: number, attrs: number, src: Uint8Array, off: number, len: number, expire: number): boolean {
    if ((this.flags[r]! & F_ATTRS) !== attrs || this.len[r] !== len || this.expireOf(r) !== expire) return false;
    if ((attrs & F_V6) === 0) return this.addr4[r] === v4Word(src, off);
    const a = this.addr6.get(r)!;
    for (let i = 0; i < 16; i++) if (a[i] !== src[off + i]) return false;
    return true;
  }

  ruleTable(r: number): TableId {
    const f = this.flags[r]!;
    return (((f & F_EGRESS) !== 0 ? 2 : 0) + ((f & F_V6) !== 0 ? 1 : 0)) as TableId;
  }

  // ---------------------------------------------------------- prefix records

  /** Prefix record for (t, bytes at offset, len); creates it when `create`. */
  pfxFor(t: TableId, bytes: Uint8Array, offset: number, len: number, create: boolean): number {
    if ((t & 1) === 0) {
      const key = v4Key(t, v4Word(bytes, offset), len);
      const p = this.v4Index.get(key);
      if (p !== NONE || !create) return p;
      const np = this.allocPfx(t, len);
      this.pKey[np] = key;
      this.v4Index.set(key, np);
      return np;
    }
    const key = v6Key(t, bytes, len, offset);
    const p = this.v6Index.get(key);
    if (p !== undefined) return p;
    if (!create) return NONE;
    const np = this.allocPfx(t, len);
    this.pKeyV6.set(np, key);
    this.v6Index.set(key, np);
    return np;
  }

  /** The IPv4 prefix record for (t, word, len), created if missing. */
  private pfxForV4(t: TableId, word: number, len: number): number {
    const key = v4Key(t, word, len);
    const p = this.v4Index.get(key);
    if (p !== NONE) return p;
    const np = this.allocPfx(t, len);
    this.pKey[np] = key;
    this.v4Index.set(key, np);
    return np;
  }

  /** Lookup of an IPv4 (table, masked word, len). */
  pfxV4(t: TableId, word: number, len: number): number {
    return this.v4Index.get(v4Key(t, word, len));
  }
  pfxV6(t: TableId, masked: Uint8Array, len: number): number {
    return this.v6Index.get(v6Key(t, masked, len)) ?? NONE;
  }

  private allocPfx(t: TableId, len: number): number {
    let p: number;
    if (this.pFreeTop > 0) p = this.pFree[--this.pFreeTop]!;
    else {
      if (this.pHigh >= this.pfxCap) this.growPfx(this.pHigh + 1);
      p = this.pHigh++;
    }
    this.pTable[p] = t;
    this.pLen[p] = len;
    this.pHead[p] = NONE;
    this.pKernel[p] = NONE;
    return p;
  }

  /** Frees a prefix record with no desired rule and no kernel entry. */
  freePfxIfEmpty(p: number): void {
    if (this.pTable[p] === FREE_TABLE || this.pHead[p] !== NONE || this.pKernel[p] !== NONE) return;
    const t = this.pTable[p] as TableId;
    if ((t & 1) === 0) this.v4Index.delete(this.pKey[p]!);
    else {
      const k = this.pKeyV6.get(p)!;
      this.v6Index.delete(k);
      this.pKeyV6.delete(p);
    }
    this.pTable[p] = FREE_TABLE;
    if (this.pFreeTop === this.pFree.length) this.pFree = growI32(this.pFree, Math.max(64, this.pFree.length * 2), 0);
    this.pFree[this.pFreeTop++] = p;
  }

  pfxLive(p: number): boolean {
    return this.pTable[p] !== FREE_TABLE;
  }

  pfxPrefix(p: number): Prefix {
    const t = this.pTable[p] as TableId;
    if ((t & 1) === 0) {
      const { word, len } = v4KeyParts(this.pKey[p]!);
      return prefixOfV4(word, len);
    }
    return { family: 6, bytes: v6KeyBytes(this.pKeyV6.get(p)!), len: this.pLen[p]! };
  }

  pfxDirection(p: number): RuleDirection {
    return tableDirection(this.pTable[p] as TableId);
  }

  /** True if prefix `inner` lies within `outer` (same table, outer.len <= inner.len). */
  pfxContains(outer: number, inner: number): boolean {
    const t = this.pTable[outer]!;
    if (this.pTable[inner] !== t) return false;
    const ol = this.pLen[outer]!;
    if (ol > this.pLen[inner]!) return false;
    if ((t & 1) === 0) {
      const ow = v4KeyParts(this.pKey[outer]!).word;
      const iw = v4KeyParts(this.pKey[inner]!).word;
      const m = v4Mask(ol);
      return (iw & m) >>> 0 === ow;
    }
    const ok = this.pKeyV6.get(outer)!;
    const ik = this.pKeyV6.get(inner)!;
    const ib = v6KeyBytes(ik);
    const masked = mask16(ib, ol);
    for (let i = 0; i < 16; i++) if (masked[i] !== ok.charCodeAt(2 + i)) return false;
    return true;
  }

  private link(r: number): void {
    const t = this.ruleTable(r);
    const p = (t & 1) === 0 ? this.pfxForV4(t, this.addr4[r]!, this.len[r]!) : this.pfxFor(t, this.addr6.get(r)!, 0, this.len[r]!, true);
    this.pfx[r] = p;
    this.next[r] = this.pHead[p]!;
    this.pHead[p] = r;
    if (!this.dirtyAll) this.dirtyPfx.add(p);
    if ((this.flags[r]! & F_ALLOW) !== 0) {
      this.allowLens[t * 129 + this.len[r]!]!++;
      if (!this.dirtyAll) this.dirtyAllowPfx.add(p);
    }
  }

  private unlink(r: number): void {
    const p = this.pfx[r]!;
    if (p === NONE) return;
    let prev = NONE;
    for (let x = this.pHead[p]!; x !== NONE; x = this.next[x]!) {
      if (x === r) {
        if (prev === NONE) this.pHead[p] = this.next[r]!;
        else this.next[prev] = this.next[r]!;
        break;
      }
      prev = x;
    }
    this.pfx[r] = NONE;
    this.next[r] = NONE;
    if (!this.dirtyAll) this.dirtyPfx.add(p);
    if ((this.flags[r]! & F_ALLOW) !== 0) {
      const t = this.pTable[p]!;
      this.allowLens[t * 129 + this.pLen[p]!]!--;
      if (!this.dirtyAll) this.dirtyAllowPfx.add(p);
    }
  }

  // ------------------------------------------------------------ desired side

  /**
   * Makes `spec` part of the desired set (idempotent). The caller validated
   * it and dropped it if already expired.
   */
  upsert(spec: RuleSpec): void {
    const p = spec.prefix;
    let attrs = 0;
    if (p.family === 6) attrs |= F_V6;
    if (spec.direction === 'egress') attrs |= F_EGRESS;
    if (spec.action === 'allow') attrs |= F_ALLOW;
    if (spec.mode === 'monitor') attrs |= F_MONITOR;
    this.upsertRaw(spec.id, attrs, p.bytes, 0, p.len, spec.expireUnixMs);
  }

  /**
   * upsert() without objects: attribute flags (F_V6 | F_EGRESS | F_ALLOW |
   * F_MONITOR), the address at src[off..] (4 or 16 bytes, host bits zero),
   * prefix length, expiry (Unix ms, 0 = never).
   */
  upsertRaw(id: bigint, attrs: number, src: Uint8Array, off: number, len: number, expire: number): void {
    if (this.invalid.size > 0) this.invalid.delete(id);
    let r = this.find(id);
    if (r === NONE) {
      r = this.allocRule(id);
      this.writeAttrs(r, attrs, src, off, len, expire);
      this.flags[r] = this.flags[r]! | F_DESIRED | F_SEEN;
      this.desiredN++;
      this.link(r);
      if (!this.dirtyAll) this.dirtyRules.add(r);
      if (expire > 0) this.onExpiry?.(r, expire);
      return;
    }
    const f = this.flags[r]!;
    const same = this.sameAttrs(r, attrs, src, off, len, expire);
    if (same && (f & F_DESIRED) !== 0) {
      this.flags[r] = f | F_SEEN;
      return;
    }
    if (!same) {
      if ((f & F_JOURNALED) !== 0 && (f & F_SHADOW) === 0) {
        this.shadow.set(r, { flags: f & F_ATTRS, addr: this.addrBytes(r), len: this.len[r]!, expire: this.expireOf(r) });
        this.flags[r] = this.flags[r]! | F_SHADOW;
      }
      if ((f & F_DESIRED) !== 0) this.unlink(r);
      this.writeAttrs(r, attrs, src, off, len, expire);
    }
    if ((f & F_DESIRED) === 0) this.desiredN++;
    this.flags[r] = this.flags[r]! | F_DESIRED | F_SEEN;
    this.link(r);
    if (!this.dirtyAll) this.dirtyRules.add(r);
    if (expire > 0) this.onExpiry?.(r, expire);
  }

  /** Removes rule `id` from the desired set; unknown ids are ignored. */
  remove(id: bigint): void {
    if (this.invalid.size > 0) this.invalid.delete(id);
    const r = this.find(id);
    if (r !== NONE) this.removeRecord(r);
  }

  /** Removes record `r` from the desired set. */
  removeRecord(r: number): void {
    const f = this.flags[r]!;
    if ((f & F_DESIRED) === 0) return;
    this.unlink(r);
    this.flags[r] = f & ~(F_DESIRED | F_SEEN);
    this.desiredN--;
    if ((f & F_JOURNALED) === 0) this.freeRule(r);
    else if (!this.dirtyAll) this.dirtyRules.add(r);
  }

  /** A rule the kernel cannot take: refused (NACK) until deleted or replaced. */
  markInvalid(id: bigint, reason: string): void {
    // The last valid version (if any) leaves the desired set: the control
    // plane no longer wants it.
    this.remove(id);
    this.invalid.set(id, reason);
  }

  /** Starts a full snapshot: rules not upserted before endSnapshot() leave the desired set. */
  beginSnapshot(expectedTotal: number): void {
    if (expectedTotal > 0) this.reserve(expectedTotal);
    for (let r = 0; r < this.rHigh; r++) this.flags[r] = this.flags[r]! & ~F_SEEN;
    this.invalid.clear();
    this.snapshotOpen = true;
    // A snapshot is planned in full: no need to record each change.
    this.markAllDirty();
  }

  /** Everything is in scope for the next plan (the per-change sets are dropped). */
  markAllDirty(): void {
    this.dirtyAll = true;
    this.dirtyRules.clear();
    this.dirtyPfx.clear();
    this.dirtyAllowPfx.clear();
  }

  endSnapshot(): void {
    for (let r = 0; r < this.rHigh; r++) {
      const f = this.flags[r]!;
      if ((f & F_DESIRED) !== 0 && (f & F_SEEN) === 0) this.removeRecord(r);
    }
    this.snapshotOpen = false;
    this.markAllDirty();
  }

  /** A snapshot cut short (stream lost): keep what arrived, remove nothing. */
  abortSnapshot(): void {
    this.snapshotOpen = false;
  }

  // ----------------------------------------------------- journal and kernel

  /** At start: a rule read back from the journal (desired unless expired). Returns its record. */
  loadJournal(j: JournalRule, desired: boolean): number {
    if (this.find(j.id) !== NONE) throw new Error(`journal holds rule ${j.id} twice`);
    const r = this.allocRule(j.id);
    let attrs = 0;
    if (j.prefix.family === 6) attrs |= F_V6;
    if (j.direction === 'egress') attrs |= F_EGRESS;
    if (j.action === 'allow') attrs |= F_ALLOW;
    if (j.mode === 'monitor') attrs |= F_MONITOR;
    this.writeAttrs(r, attrs, j.prefix.bytes, 0, j.prefix.len, j.expireUnixMs);
    return this.adoptJournaled(r, j.slot, desired, j.expireUnixMs);
  }

  /** At start: journal.upsert op i of a batch read back from the journal (desired unless expired). Returns its record. */
  loadJournalOp(b: OpBatch, i: number, desired: boolean): number {
    const id = b.id[i]!;
    if (this.find(id) !== NONE) throw new Error(`journal holds rule ${id} twice`);
    const r = this.allocRule(id);
    const table = b.table[i]!;
    const expire = b.expire[i]!;
    if ((table & 1) === 0) {
      const w = b.addr4[i]!;
      const t4 = this.tmp4;
      t4[0] = w >>> 24;
      t4[1] = (w >>> 16) & 255;
      t4[2] = (w >>> 8) & 255;
      t4[3] = w & 255;
      this.writeAttrs(r, flagsOfOp(table, b.attrs[i]!), t4, 0, b.len[i]!, expire);
    } else {
      this.writeAttrs(r, flagsOfOp(table, b.attrs[i]!), b.addr6, i * 16, b.len[i]!, expire);
    }
    return this.adoptJournaled(r, b.slot[i]!, desired, expire);
  }

  /** A record read back from the journal: its counter slot, journaled, and desired (linked, expiry armed) unless expired. */
  private adoptJournaled(r: number, slot: number, desired: boolean, expire: number): number {
    this.slot[r] = slot;
    this.flags[r] = this.flags[r]! | F_JOURNALED;
    this.journaledN++;
    if (desired) {
      this.flags[r] = this.flags[r]! | F_DESIRED;
      this.desiredN++;
      this.link(r);
      if (expire > 0) this.onExpiry?.(r, expire);
    }
    if (!this.dirtyAll) this.dirtyRules.add(r);
    return r;
  }

  /** At start: entry.upsert op i of a batch read back from the kernel tables. */
  loadKernelOp(b: OpBatch, i: number): void {
    const t = b.table[i]! as TableId;
    const len = b.len[i]!;
    const p = (t & 1) === 0 ? this.pfxForV4(t, (b.addr4[i]! & v4Mask(len)) >>> 0, len) : this.pfxFor(t, b.addr6, i * 16, len, true);
    if (this.pKernel[p] === NONE) this.kernelCount[t]!++;
    this.pKernel[p] = b.slot[i]! * 4 + (b.attrs[i]! & 3);
    if (!this.dirtyAll) this.dirtyPfx.add(p);
  }

  /** The prefix record of op i's prefix (table, address, length; masked), or -1. */
  pfxOfOp(b: OpBatch, i: number): number {
    const t = b.table[i]! as TableId;
    const len = b.len[i]!;
    if ((t & 1) === 0) return this.v4Index.get(v4Key(t, (b.addr4[i]! & v4Mask(len)) >>> 0, len));
    return this.v6Index.get(v6Key(t, b.addr6, len, i * 16)) ?? NONE;
  }

  /** Appends an entry.upsert of prefix record p with packed entry `packed` (packEntry). */
  writeEntryUpsert(out: OpBatch, p: number, packed: number): void {
    const t = this.pTable[p]! as TableIndex;
    if ((t & 1) === 0) out.entryUpsert(t, v4KeyWord(this.pKey[p]!), 0, this.pLen[p]!, packed & 3, packed >>> 2);
    else out.entryUpsert(t, this.v6KeyInto(p), 0, this.pLen[p]!, packed & 3, packed >>> 2);
  }

  /** Appends an entry.delete of prefix record p. */
  writeEntryDelete(out: OpBatch, p: number): void {
    const t = this.pTable[p]! as TableIndex;
    if ((t & 1) === 0) out.entryDelete(t, v4KeyWord(this.pKey[p]!), 0, this.pLen[p]!);
    else out.entryDelete(t, this.v6KeyInto(p), 0, this.pLen[p]!);
  }

  /** The IPv6 prefix record's address bytes in a scratch buffer (valid until the next call). */
  private v6KeyInto(p: number): Uint8Array {
    const k = this.pKeyV6.get(p)!;
    const out = this.tmp16;
    for (let i = 0; i < 16; i++) out[i] = k.charCodeAt(2 + i);
    return out;
  }

  /** Appends a journal.upsert of rule r's desired version with counter slot `slot`. */
  writeDesiredJournalRule(out: OpBatch, r: number, slot: number): void {
    const f = this.flags[r]!;
    const table = (((f & F_EGRESS) !== 0 ? 2 : 0) | ((f & F_V6) !== 0 ? 1 : 0)) as TableIndex;
    if ((f & F_V6) === 0) out.journalUpsert(this.id[r]!, table, this.addr4[r]!, 0, this.len[r]!, attrsOfFlags(f), slot, this.expireOf(r));
    else out.journalUpsert(this.id[r]!, table, this.addr6.get(r)!, 0, this.len[r]!, attrsOfFlags(f), slot, this.expireOf(r));
  }

  /** Appends a journal.upsert of rule r as the journal holds it (its shadowed version if changed since). */
  writeJournalVersion(out: OpBatch, r: number): void {
    const sh = this.shadow.get(r);
    if (!sh) {
      this.writeDesiredJournalRule(out, r, this.slot[r]!);
      return;
    }
    const f = sh.flags;
    const table = (((f & F_EGRESS) !== 0 ? 2 : 0) | ((f & F_V6) !== 0 ? 1 : 0)) as TableIndex;
    out.journalUpsert(this.id[r]!, table, sh.addr, 0, sh.len, attrsOfFlags(f), this.slot[r]!, sh.expire);
  }

  /** True if journal.upsert op i equals rule r's journaled version (prefix masked on both sides). */
  sameJournalOp(r: number, b: OpBatch, i: number): boolean {
    if (b.kind[i] !== OP.journalUpsert || b.id[i] !== this.id[r]) return false;
    const sh = this.shadow.get(r);
    const f = sh ? sh.flags : this.flags[r]!;
    const len = sh ? sh.len : this.len[r]!;
    const expire = sh ? sh.expire : this.expireOf(r);
    const table = ((f & F_EGRESS) !== 0 ? 2 : 0) | ((f & F_V6) !== 0 ? 1 : 0);
    if (b.table[i] !== table || b.len[i] !== len || b.attrs[i] !== attrsOfFlags(f) || b.slot[i] !== this.slot[r] || b.expire[i] !== expire)
      return false;
    if ((f & F_V6) === 0) {
      const a = sh ? v4Word(sh.addr, 0) : this.addr4[r]!;
      return (a & v4Mask(len)) >>> 0 === (b.addr4[i]! & v4Mask(len)) >>> 0;
    }
    const a = mask16(sh ? sh.addr : this.addr6.get(r)!, len);
    const c = mask16(b.addr6, len, i * 16);
    for (let k = 0; k < 16; k++) if (a[k] !== c[k]) return false;
    return true;
  }

  /** At start: an entry read back from the kernel. */
  loadKernel(e: KernelEntry): void {
    const t = tableOf(e.direction, e.prefix.family);
    const bytes = e.prefix.family === 6 ? mask16(e.prefix.bytes, 128) : e.prefix.bytes;
    const p = this.pfxFor(t, bytes, 0, e.prefix.len, true);
    if (this.pKernel[p] === NONE) this.kernelCount[t]!++;
    this.pKernel[p] = packEntry(e.slot, e.action === 'allow', e.mode === 'monitor');
    if (!this.dirtyAll) this.dirtyPfx.add(p);
  }

  /** The rule as the journal holds it (its shadowed version if changed since). */
  journalVersion(r: number): JournalRule {
    const sh = this.shadow.get(r);
    const f = sh ? sh.flags : this.flags[r]!;
    const addr = sh ? sh.addr : this.addrBytes(r);
    const len = sh ? sh.len : this.len[r]!;
    const expire = sh ? sh.expire : this.expireOf(r);
    return this.makeJournalRule(r, f, addr, len, expire, this.slot[r]!);
  }

  /** The rule's desired version with counter slot `slot`. */
  desiredJournalRule(r: number, slot: number): JournalRule {
    return this.makeJournalRule(r, this.flags[r]!, this.addrBytes(r), this.len[r]!, this.expireOf(r), slot);
  }

  private makeJournalRule(r: number, f: number, addr: Uint8Array, len: number, expire: number, slot: number): JournalRule {
    const v6 = (f & F_V6) !== 0;
    return {
      id: this.id[r]!,
      direction: (f & F_EGRESS) !== 0 ? 'egress' : 'ingress',
      prefix: { family: v6 ? 6 : 4, bytes: addr.length === (v6 ? 16 : 4) ? addr : addr.slice(0, v6 ? 16 : 4), len },
      action: (f & F_ALLOW) !== 0 ? 'allow' : 'deny',
      mode: (f & F_MONITOR) !== 0 ? 'monitor' : 'enforce',
      expireUnixMs: expire,
      slot,
    };
  }

  /** The desired rule at record r as a RuleSpec (tests, Explain-like checks). */
  spec(r: number): RuleSpec {
    const j = this.desiredJournalRule(r, 0);
    return { id: j.id, direction: j.direction, prefix: j.prefix, action: j.action, mode: j.mode, expireUnixMs: j.expireUnixMs };
  }

  /** Every desired rule (tests and diagnostics; allocates). */
  desiredRules(): RuleSpec[] {
    const out: RuleSpec[] = [];
    for (let r = 0; r < this.rHigh; r++) if ((this.flags[r]! & F_DESIRED) !== 0) out.push(this.spec(r));
    return out;
  }

  // ----------------------------------------------------------------- commit

  markJournaled(r: number, slot: number): void {
    const f = this.flags[r]!;
    if ((f & F_JOURNALED) === 0) this.journaledN++;
    this.flags[r] = (f | F_JOURNALED) & ~F_SHADOW;
    this.shadow.delete(r);
    this.slot[r] = slot;
  }

  /** The journal entry of a rule that left the desired set is gone. */
  markUnjournaled(r: number): void {
    const f = this.flags[r]!;
    if ((f & F_JOURNALED) !== 0) this.journaledN--;
    this.flags[r] = f & ~(F_JOURNALED | F_SHADOW);
    this.shadow.delete(r);
    this.slot[r] = NONE;
    if ((f & F_DESIRED) === 0) this.freeRule(r);
  }

  setKernel(p: number, packed: number): void {
    const t = this.pTable[p]!;
    const was = this.pKernel[p]!;
    if (was === NONE && packed !== NONE) this.kernelCount[t]!++;
    else if (was !== NONE && packed === NONE) this.kernelCount[t]!--;
    this.pKernel[p] = packed;
  }

  clearDirty(): void {
    this.dirtyAll = false;
    this.dirtyRules.clear();
    this.dirtyPfx.clear();
    this.dirtyAllowPfx.clear();
  }
}
