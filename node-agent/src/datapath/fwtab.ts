// The hash of one table: a bucketed two-choice hash table in an mmapable
// ARRAY map (layout and hash in bpf/include/fleetwall_abi.h).
//
// The programs compute the same hash in BPF and read one bucket per probe
// (IPv4: one 64-byte line, a tag word and seven u64 slot words; IPv6: 128
// bytes, five slots). This side maps the map's values into the process and
// changes a slot with single atomic stores, so a program never sees half an
// entry:
//   - IPv4: a whole entry (key, counter slot, action, mode) is one u64 word,
//     found through its 7-bit tag in the bucket's tag word. Insert stores the
//     slot word, then the tag word with its tag; delete clears the tag, then
//     the slot word; replace is one store of the slot word.
//   - IPv6: the address is written into an empty slot first, then the meta
//     word (valid, length, slot, action, mode) with a release store; the
//     program reads meta first and the address through a dependency on it.
//     A freed slot is reused only after an RCU grace period.
// A key lives in its first bucket if a slot is free, else in its second (the
// first bucket gets the overflow flag first), else in the spill hash (the
// first bucket gets the spill flag first). A key never moves while it exists,
// so a program probing it finds the old or the new value, never nothing.
// IPv4 tables also have a direct /24 index (direct24.ts), which the owner
// keeps in step with the entries written here.
//
// The table's pages are mapped only while an apply or a read uses them (see
// MapRegion): every access goes through b1()/b2() (which map the bucket's
// page) or mapAll() (iteration, bulk loads); the owner releases the windows.
//
// Little-endian hosts only (x86-64, arm64): slot words are read as u32 halves.

import { constants as osConstants } from 'node:os';
import type { RuleAction, RuleMode } from '../../../common/src/policy.js';
import {
  FW_B4_SLOTS,
  FW_B4_WORDS,
  FW_B6_SLOTS,
  FW_HASH_MUL,
  FW_HASH_MUL4,
  FW_HASH_MUL6,
  FW_HASH_SEED2,
  FW_TAG4_MUL,
  LAYOUT,
  readEntry,
  writeEntry,
} from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { ATTR_ALLOW, ATTR_MONITOR, type OpBatch, type TableIndex } from './datapath.js';
import { DatapathError } from './errors.js';
import { MapRegion, rcuGracePeriod } from './libbpf.js';

const E = osConstants.errno;

/** murmur3's 32-bit finaliser (fw_fmix in fw_decide.h). */
export function fmix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** floor(x * n / 2^32), exactly (fw_range). */
export function range32(x: number, n: number): number {
  const hi = x >>> 16;
  const lo = x & 0xffff;
  return Math.floor((hi * n + Math.floor((lo * n) / 65536)) / 65536);
}

export interface TabValue {
  readonly slot: number;
  readonly action: RuleAction;
  readonly mode: RuleMode;
}

export interface TabEntry extends TabValue {
  readonly len: number;
  /** The address with host bits cleared. */
  readonly bytes: Uint8Array;
}

/**
 * h1 of a key (fw_probe4/fw_probe6): bytes = the address with host bits
 * cleared (4 or 16 bytes). Bucket 1 = range32(h1, n), bucket 2 = range32(fmix32(h1 ^ FW_HASH_SEED2), n).
 */
export function keyHash(seed: number, len: number, bytes: Uint8Array): number {
  if (bytes.length === 4) {
    const a = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
    return Math.imul((a ^ seed ^ Math.imul(len, FW_HASH_MUL)) >>> 0, FW_HASH_MUL4) >>> 0;
  }
  let x = seed ^ Math.imul(len, FW_HASH_MUL);
  for (let j = 0; j < 4; j++) {
    const w = (bytes[4 * j]! | (bytes[4 * j + 1]! << 8) | (bytes[4 * j + 2]! << 16) | (bytes[4 * j + 3]! << 24)) >>> 0;
    x ^= Math.imul(w, FW_HASH_MUL6[j]!);
  }
  return fmix32(x >>> 0);
}

/** The tag of an IPv4 key in its buckets' tag words, from its h1 (0x80..0xff; 0 = an empty slot). */
export function tag4(h1: number): number {
  return 0x80 | (Math.imul(h1, FW_TAG4_MUL) >>> 25);
}

/** The two candidate buckets of a key (bytes masked). */
export function bucketsOf(seed: number, nbuckets: number, len: number, bytes: Uint8Array): [number, number] {
  const h1 = keyHash(seed, len, bytes);
  return [range32(h1, nbuckets), range32(fmix32((h1 ^ FW_HASH_SEED2) >>> 0), nbuckets)];
}

/** Buckets for a capacity: IPv4 (7 slots) at most 4/7 full, IPv6 (5 slots) at most 60% full. */
export function bucketsFor(family: 4 | 6, capacity: number): number {
  return Math.max(64, Math.ceil(family === 4 ? capacity / 4 : capacity / 3));
}

/** Spill hash size for a capacity (a key lands there only when both its buckets are full). */
export function spillSizeFor(capacity: number): number {
  return Math.max(1024, Math.ceil(capacity / 16));
}

// IPv4 slot word, as (lo, hi) u32 halves; the bucket flags are in the tag word's hi half.
const S4_SLOT_SHIFT_HI = 1; // bit 33
const S4_VERDICT_SHIFT_HI = 27; // bits 59..60: fw_slot_verdict
const S4_MONITOR_HI = 1 << 29; // bit 61
const S4_SPILL_HI = 0x40000000; // bit 62
const S4_OVF_HI = 0x80000000; // bit 63
// IPv6 meta, low half; high half = the counter slot.
const M6_VALID = 0x100;
const M6_VERDICT_SHIFT = 9; // bits 9..10: fw_slot_verdict
const M6_MONITOR = 0x800;
const B6_OVF = 1n;
const B6_SPILL = 2n;
const B6_WORDS = 16; // 128 bytes

// enum fw_slot_verdict
const SV_PASS = 0;
const SV_DROP = 1;
const SV_WOULD_DROP = 2;

/** The verdict a slot carries: allow -> pass; deny -> drop, or would-drop in monitor mode. */
export function slotVerdict(attrs: number): number {
  return (attrs & ATTR_ALLOW) !== 0 ? SV_PASS : (attrs & ATTR_MONITOR) !== 0 ? SV_WOULD_DROP : SV_DROP;
}

/** locate(): the key is in the spill hash. */
const IN_SPILL = -2;
/** locate(): the key is absent. */
const ABSENT = -1;

export class HashTable {
  readonly family: 4 | 6;
  readonly nbuckets: number;
  private readonly seed: number;
  /** The table's buckets, mapped in windows (the owner releases them after each operation). */
  readonly region: MapRegion;
  private readonly bucketBytes: number;
  private readonly w64: BigUint64Array;
  private readonly w32: Uint32Array;
  private readonly spill: BpfMap;
  /** IPv6 slots freed in this process: reusable after the next grace period. */
  private readonly pending = new Set<number>();
  /** IPv6: slots freed by an earlier process may be recent; one grace period before the first reuse. */
  private graceNeeded = true;
  private readonly s64 = new BigUint64Array(1);
  private readonly scan6 = new Uint8Array(16);
  private readonly s32 = new Uint32Array(this.s64.buffer);
  private readonly spillKey: Buffer;
  private readonly spillVal = Buffer.alloc(LAYOUT.fw_entry.size);
  private closed = false;
  // The key being worked on (set by setKey; no allocation per entry).
  private kLen = 0;
  /** IPv6: the masked address as four little-endian u32 words of its network bytes. */
  private readonly kM = new Uint32Array(4);
  private readonly kBytes: Uint8Array;
  private kH1 = 0;
  /** IPv4: the key as the low 33 bits of the slot word: low half and bit 32. */
  private kLo = 0;
  private kBit32 = 0;
  /** IPv4: the key's tag. */
  private kTag = 0;

  constructor(family: 4 | 6, tab: BpfMap, spill: BpfMap, seed: number, nbuckets: number) {
    this.family = family;
    this.seed = seed >>> 0;
    this.nbuckets = nbuckets;
    if (nbuckets < 1 || nbuckets > tab.maxEntries) {
      throw new DatapathError('open table', tab.name, E.EINVAL, `configured for ${nbuckets} buckets, the map holds ${tab.maxEntries}`);
    }
    const bucketBytes = family === 4 ? LAYOUT.fw_bucket4.size : LAYOUT.fw_bucket6.size;
    this.bucketBytes = bucketBytes;
    this.region = new MapRegion(tab.fd, tab.maxEntries * bucketBytes, tab.name);
    this.w64 = new BigUint64Array(this.region.buffer, 0, (nbuckets * bucketBytes) / 8);
    this.w32 = new Uint32Array(this.region.buffer, 0, (nbuckets * bucketBytes) / 4);
    this.spill = spill;
    this.spillKey = Buffer.alloc(family === 4 ? LAYOUT.fw_key4.size : LAYOUT.fw_key6.size);
    this.kBytes = this.spillKey.subarray(4);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.region.close();
  }

  /** Maps the whole table (before many operations on it). */
  mapAll(): void {
    this.region.mapAll();
  }

  /** Unmaps every window of the table. */
  release(): void {
    this.region.release();
  }

  // ---------------------------------------------------------------- keys

  /** Makes (len, bytes with host bits cleared) the current key and hashes it. */
  private setKey(len: number, bytes: Uint8Array, off = 0): void {
    if (this.family === 4)
      this.setKey4(len, ((bytes[off]! << 24) | (bytes[off + 1]! << 16) | (bytes[off + 2]! << 8) | bytes[off + 3]!) >>> 0);
    else this.setKey6(len, bytes, off);
  }

  /** IPv4: the key (len, v: the address as a number, host bits ignored). */
  private setKey4(len: number, v: number): void {
    this.kLen = len;
    this.spillKey.writeUInt32LE(len, 0);
    const kb = this.kBytes;
    {
      const a = len === 0 ? 0 : (v & ((0xffffffff << (32 - len)) >>> 0)) >>> 0;
      kb[0] = a >>> 24;
      kb[1] = (a >>> 16) & 0xff;
      kb[2] = (a >>> 8) & 0xff;
      kb[3] = a & 0xff;
      this.kH1 = keyHash(this.seed, len, kb);
      this.kTag = tag4(this.kH1);
      const k = a * 2 + 2 ** (32 - len); // < 2^33
      this.kLo = k % 4294967296;
      this.kBit32 = k >= 4294967296 ? 1 : 0;
    }
  }

  /** IPv6: the key (len, the 16 address bytes at off, host bits ignored). */
  private setKey6(len: number, bytes: Uint8Array, off: number): void {
    this.kLen = len;
    this.spillKey.writeUInt32LE(len, 0);
    const kb = this.kBytes;
    for (let i = 0; i < 16; i++) {
      const keep = len - i * 8;
      const x = bytes[off + i]!;
      kb[i] = keep >= 8 ? x : keep <= 0 ? 0 : x & ((0xff << (8 - keep)) & 0xff);
    }
    const m = this.kM;
    for (let j = 0; j < 4; j++) m[j] = (kb[4 * j]! | (kb[4 * j + 1]! << 8) | (kb[4 * j + 2]! << 16) | (kb[4 * j + 3]! << 24)) >>> 0;
    this.kH1 = keyHash(this.seed, len, kb);
  }

  /** The current key's first bucket (its page mapped). */
  private b1(): number {
    const b = range32(this.kH1, this.nbuckets);
    this.region.ensure(b * this.bucketBytes, this.bucketBytes);
    return b;
  }

  /** The current key's second bucket (its page mapped). */
  private b2(): number {
    const b = range32(fmix32((this.kH1 ^ FW_HASH_SEED2) >>> 0), this.nbuckets);
    this.region.ensure(b * this.bucketBytes, this.bucketBytes);
    return b;
  }

  // ---------------------------------------------------------------- lookups

  /** Slot word index of the current key in bucket b, or -1. */
  private scan(b: number): number {
    const w32 = this.w32;
    if (this.family === 4) {
      const lo = this.kLo;
      const bit32 = this.kBit32;
      for (let i = 1; i <= FW_B4_SLOTS; i++) {
        const wi = b * FW_B4_WORDS + i;
        if (w32[2 * wi] === lo && (w32[2 * wi + 1]! & 1) === bit32) return wi;
      }
      return -1;
    }
    const want = M6_VALID | this.kLen;
    const m = this.kM;
    for (let s = 0; s < FW_B6_SLOTS; s++) {
      const wi = b * B6_WORDS + s * 3;
      if ((w32[2 * (wi + 2)]! & 0x1ff) !== want) continue;
      if (w32[2 * wi] === m[0] && w32[2 * wi + 1] === m[1] && w32[2 * wi + 2] === m[2] && w32[2 * wi + 3] === m[3]) return wi;
    }
    return -1;
  }

  private hasFlag(b: number, which: 'ovf' | 'spill'): boolean {
    if (this.family === 4) return (this.w32[2 * b * FW_B4_WORDS + 1]! & (which === 'ovf' ? S4_OVF_HI : S4_SPILL_HI)) !== 0;
    return (this.w32[2 * (b * B6_WORDS + 15)]! & (which === 'ovf' ? 1 : 2)) !== 0;
  }

  /** Where the current key is: a slot word index, IN_SPILL or ABSENT (the programs' probe order). */
  private locate(): number {
    const b1 = this.b1();
    let idx = this.scan(b1);
    if (idx >= 0) return idx;
    if (this.hasFlag(b1, 'ovf')) {
      idx = this.scan(this.b2());
      if (idx >= 0) return idx;
    }
    if (this.hasFlag(b1, 'spill') && this.spill.lookup(this.spillKey)) return IN_SPILL;
    return ABSENT;
  }

  /** The value stored for exactly this prefix, or null. */
  get(len: number, bytes: Uint8Array): TabValue | null {
    this.setKey(len, bytes, 0);
    const loc = this.locate();
    if (loc === ABSENT) return null;
    if (loc === IN_SPILL) {
      const e = readEntry(this.spill.lookup(this.spillKey)!, 0);
      return { slot: e.slot, action: e.action, mode: e.mode };
    }
    return this.valueAt(loc);
  }

  has(len: number, bytes: Uint8Array, off = 0): boolean {
    this.setKey(len, bytes, off);
    return this.locate() !== ABSENT;
  }

  /** has() of an IPv4 key given as a number. */
  has4(len: number, v: number): boolean {
    this.setKey4(len, v);
    return this.locate() !== ABSENT;
  }

  private valueAt(wi: number): TabValue {
    if (this.family === 4) {
      const hi = this.w32[2 * wi + 1]!;
      return {
        slot: (hi >>> S4_SLOT_SHIFT_HI) & 0x3ffffff,
        action: ((hi >>> S4_VERDICT_SHIFT_HI) & 3) === SV_PASS ? 'allow' : 'deny',
        mode: hi & S4_MONITOR_HI ? 'monitor' : 'enforce',
      };
    }
    const lo = this.w32[2 * (wi + 2)]!;
    return {
      slot: this.w32[2 * (wi + 2) + 1]!,
      action: ((lo >>> M6_VERDICT_SHIFT) & 3) === SV_PASS ? 'allow' : 'deny',
      mode: lo & M6_MONITOR ? 'monitor' : 'enforce',
    };
  }

  // ---------------------------------------------------------------- writes

  /** Inserts or replaces one entry (attrs: ATTR_ALLOW | ATTR_MONITOR). Returns true if the prefix was new. */
  upsert(len: number, bytes: Uint8Array, off: number, attrs: number, slot: number): boolean {
    this.setKey(len, bytes, off);
    return this.upsertCurrent(attrs, slot);
  }

  /** upsert() of an IPv4 key given as a number. */
  upsert4(len: number, v: number, attrs: number, slot: number): boolean {
    this.setKey4(len, v);
    return this.upsertCurrent(attrs, slot);
  }

  private upsertCurrent(attrs: number, slot: number): boolean {
    if (!Number.isInteger(slot) || slot < 0 || slot > 0x3ffffff) throw new DatapathError('write table entry', `slot ${slot}`, E.ERANGE);
    const loc = this.locate();
    if (loc >= 0) {
      this.writeValue(loc, attrs, slot, false);
      return false;
    }
    if (loc === IN_SPILL) {
      this.writeSpill(attrs, slot);
      return false;
    }
    this.insertNew(attrs, slot);
    return true;
  }

  /** Removes one entry. Returns true if it existed. */
  delete(len: number, bytes: Uint8Array, off = 0): boolean {
    this.setKey(len, bytes, off);
    return this.deleteCurrent();
  }

  /** delete() of an IPv4 key given as a number. */
  delete4(len: number, v: number): boolean {
    this.setKey4(len, v);
    return this.deleteCurrent();
  }

  private deleteCurrent(): boolean {
    const loc = this.locate();
    if (loc === ABSENT) return false;
    if (loc === IN_SPILL) {
      this.spill.delete(this.spillKey);
    } else if (this.family === 4) {
      this.setTag(loc, 0); // the tag first: a program that still reads the slot finds another key or nothing
      this.store4(loc, 0, 0);
    } else {
      Atomics.store(this.w64, loc + 2, 0n);
      this.pending.add(loc);
    }
    return true;
  }

  private insertNew(attrs: number, slot: number): void {
    const b1 = this.b1();
    let idx = this.freeSlot(b1);
    if (idx < 0 && this.pendingIn(b1)) idx = this.freeSlot(b1);
    if (idx < 0) {
      const b2 = this.b2();
      let j = this.freeSlot(b2);
      if (j < 0 && this.pendingIn(b2)) j = this.freeSlot(b2);
      if (j >= 0) {
        this.setFlag(b1, 'ovf'); // before the key is where the program finds it only through the flag
        idx = j;
      }
    }
    if (idx < 0) {
      this.setFlag(b1, 'spill');
      this.writeSpill(attrs, slot);
      return;
    }
    this.writeValue(idx, attrs, slot, true);
  }

  /** True if the bucket has IPv6 slots waiting for a grace period (then waits for one: they are free now). */
  private pendingIn(b: number): boolean {
    if (this.family === 4 || this.pending.size === 0) return false;
    for (let s = 0; s < FW_B6_SLOTS; s++) {
      if (this.pending.has(b * B6_WORDS + s * 3)) {
        this.grace();
        return true;
      }
    }
    return false;
  }

  private grace(): void {
    rcuGracePeriod();
    this.pending.clear();
    this.graceNeeded = false;
  }

  private freeSlot(b: number): number {
    const w32 = this.w32;
    if (this.family === 4) {
      for (let i = 1; i <= FW_B4_SLOTS; i++) {
        const wi = b * FW_B4_WORDS + i;
        if (w32[2 * wi] === 0 && (w32[2 * wi + 1]! & 1) === 0) return wi;
      }
      return -1;
    }
    for (let s = 0; s < FW_B6_SLOTS; s++) {
      const wi = b * B6_WORDS + s * 3;
      if (w32[2 * (wi + 2)] === 0 && w32[2 * (wi + 2) + 1] === 0 && !this.pending.has(wi)) return wi;
    }
    return -1;
  }

  private setFlag(b: number, which: 'ovf' | 'spill'): void {
    if (this.family === 4) {
      const wi = b * FW_B4_WORDS;
      const hi = this.w32[2 * wi + 1]!;
      const bit = which === 'ovf' ? S4_OVF_HI : S4_SPILL_HI;
      if (hi & bit) return;
      this.store4(wi, this.w32[2 * wi]!, hi | bit);
      return;
    }
    Atomics.or(this.w64, b * B6_WORDS + 15, which === 'ovf' ? B6_OVF : B6_SPILL);
  }

  /** One IPv4 bucket word (a slot word, or the tag word), as its u32 halves, in one atomic store. */
  private store4(wi: number, lo: number, hi: number): void {
    this.s32[0] = lo >>> 0;
    this.s32[1] = hi >>> 0;
    Atomics.store(this.w64, wi, this.s64[0]!);
  }

  /** Sets the tag of IPv4 slot word wi (0: empty) in its bucket's tag word, keeping the other tags and the flags. */
  private setTag(wi: number, tag: number): void {
    const tw = wi - (wi % FW_B4_WORDS);
    const lane = (wi % FW_B4_WORDS) - 1; // slot i's tag is byte i - 1
    const w32 = this.w32;
    let lo = w32[2 * tw]!;
    let hi = w32[2 * tw + 1]!;
    if (lane < 4) lo = (lo & ~(0xff << (8 * lane))) | (tag << (8 * lane));
    else hi = (hi & ~(0xff << (8 * (lane - 4)))) | (tag << (8 * (lane - 4)));
    this.store4(tw, lo, hi);
  }

  /** Writes the current key's value at slot word wi (fresh: the slot was empty). */
  private writeValue(wi: number, attrs: number, slot: number, fresh: boolean): void {
    if (this.family === 4) {
      const hi =
        this.kBit32 |
        (slot << S4_SLOT_SHIFT_HI) |
        (slotVerdict(attrs) << S4_VERDICT_SHIFT_HI) |
        ((attrs & ATTR_MONITOR) !== 0 ? S4_MONITOR_HI : 0);
      this.store4(wi, this.kLo, hi);
      if (fresh) this.setTag(wi, this.kTag); // after the slot word: the tag makes it findable
      return;
    }
    if (fresh) {
      if (this.graceNeeded) this.grace();
      // The address first (the slot is not valid yet), then meta with a release store.
      const w32 = this.w32;
      const m = this.kM;
      w32[2 * wi] = m[0]!;
      w32[2 * wi + 1] = m[1]!;
      w32[2 * wi + 2] = m[2]!;
      w32[2 * wi + 3] = m[3]!;
    }
    this.s32[0] = this.kLen | M6_VALID | (slotVerdict(attrs) << M6_VERDICT_SHIFT) | ((attrs & ATTR_MONITOR) !== 0 ? M6_MONITOR : 0);
    this.s32[1] = slot;
    Atomics.store(this.w64, wi + 2, this.s64[0]!);
  }

  private writeSpill(attrs: number, slot: number): void {
    writeEntry(
      this.spillVal,
      0,
      slot,
      (attrs & ATTR_ALLOW) !== 0 ? 'allow' : 'deny',
      (attrs & ATTR_MONITOR) !== 0 ? 'monitor' : 'enforce',
      this.kLen,
    );
    const errno = this.spill.tryUpdate(this.spillKey, this.spillVal, 0n);
    if (errno !== 0) {
      throw new DatapathError(
        'update map',
        this.spill.name,
        errno,
        errno === E.E2BIG ? `spill hash is full (${this.spill.maxEntries} entries)` : undefined,
      );
    }
  }

  /**
   * Clears every bucket flag; only when the table holds no entry (the caller
   * knows), so no key can depend on one. Flags are otherwise conservative:
   * a delete never clears them (other keys may still need them).
   */
  clearFlagsOfEmptyTable(): void {
    this.region.mapAll();
    const w32 = this.w32;
    if (this.family === 4) {
      for (let b = 0; b < this.nbuckets; b++) {
        const wi = b * FW_B4_WORDS;
        if (w32[2 * wi] !== 0 || w32[2 * wi + 1] !== 0) Atomics.store(this.w64, wi, 0n);
      }
    } else {
      for (let b = 0; b < this.nbuckets; b++) if (w32[2 * (b * B6_WORDS + 15)] !== 0) Atomics.store(this.w64, b * B6_WORDS + 15, 0n);
    }
  }

  // ---------------------------------------------------------------- iteration

  /**
   * Calls fn for every entry (table, then spill), allocating nothing per
   * entry: IPv4 keys as a number (a4), IPv6 keys as 16 bytes at a6[off..]
   * (a view valid only during the call). Addresses are masked.
   */
  forEachRaw(fn: (len: number, a4: number, a6: Uint8Array, off: number, attrs: number, slot: number) => void): void {
    this.region.mapAll();
    const w32 = this.w32;
    const none = this.kBytes; // unused for IPv4
    if (this.family === 4) {
      const n = this.nbuckets * FW_B4_WORDS;
      for (let wi = 0; wi < n; wi++) {
        if (wi % FW_B4_WORDS === 0) continue; // the tag word
        const lo = w32[2 * wi]!;
        const hi = w32[2 * wi + 1]!;
        const bit32 = hi & 1;
        if (lo === 0 && bit32 === 0) continue;
        const k = decodeKey4(lo, bit32);
        fn(k.len, k.a, none, 0, attrs4(hi), (hi >>> S4_SLOT_SHIFT_HI) & 0x3ffffff);
      }
    } else {
      const a6 = new Uint8Array(16);
      const a6w = new Uint32Array(a6.buffer);
      for (let b = 0; b < this.nbuckets; b++) {
        for (let s = 0; s < FW_B6_SLOTS; s++) {
          const wi = b * B6_WORDS + s * 3;
          const ml = w32[2 * (wi + 2)]!;
          if (!(ml & M6_VALID)) continue;
          for (let j = 0; j < 4; j++) a6w[j] = w32[2 * wi + j]!; // little-endian words of the network bytes
          fn(ml & 0xff, 0, a6, 0, attrs6(ml), w32[2 * (wi + 2) + 1]!);
        }
      }
    }
    const ks = this.spill.keySize;
    for (const { keys, values, count } of this.spill.lookupChunks()) {
      for (let i = 0; i < count; i++) {
        const len = keys.readUInt32LE(i * ks);
        const e = readEntry(values, i * this.spill.valueStride);
        const attrs = (e.action === 'allow' ? ATTR_ALLOW : 0) | (e.mode === 'monitor' ? ATTR_MONITOR : 0);
        if (this.family === 4) fn(len, keys.readUInt32BE(i * ks + 4), none, 0, attrs, e.slot);
        else fn(len, 0, keys, i * ks + 4, attrs, e.slot);
      }
    }
  }

  /**
   * Appends the hash slots' entries (not the spill hash's) from slot
   * position `pos` on to `out` as entry.upsert ops of `table`, until `out`
   * is full; returns the position to continue from, or -1 after the last
   * bucket. Maps the whole table.
   */
  scanInto(out: OpBatch, table: TableIndex, pos: number): number {
    this.region.mapAll();
    const w32 = this.w32;
    if (this.family === 4) {
      const n = this.nbuckets * FW_B4_WORDS;
      for (let wi = pos; wi < n; wi++) {
        if (wi % FW_B4_WORDS === 0) continue; // the tag word
        const lo = w32[2 * wi]!;
        const hi = w32[2 * wi + 1]!;
        const bit32 = hi & 1;
        if (lo === 0 && bit32 === 0) continue;
        if (out.full) return wi;
        const k = decodeKey4(lo, bit32);
        out.entryUpsert(table, k.a, 0, k.len, attrs4(hi), (hi >>> S4_SLOT_SHIFT_HI) & 0x3ffffff);
      }
      return -1;
    }
    const a6 = this.scan6;
    const a6w = new Uint32Array(a6.buffer, a6.byteOffset, 4);
    const n = this.nbuckets * FW_B6_SLOTS;
    for (let p = pos; p < n; p++) {
      const wi = Math.floor(p / FW_B6_SLOTS) * B6_WORDS + (p % FW_B6_SLOTS) * 3;
      const ml = w32[2 * (wi + 2)]!;
      if (!(ml & M6_VALID)) continue;
      if (out.full) return p;
      for (let j = 0; j < 4; j++) a6w[j] = w32[2 * wi + j]!;
      out.entryUpsert(table, a6, 0, ml & 0xff, attrs6(ml), w32[2 * (wi + 2) + 1]!);
    }
    return -1;
  }
}

const key4 = { len: 0, a: 0 };

/** The (length, address) of an IPv4 slot key: the marker is the lowest set bit of the 33-bit key. */
function decodeKey4(lo: number, bit32: number): { len: number; a: number } {
  if (lo === 0) {
    // Only bit 32: the /0 key.
    key4.len = 0;
    key4.a = 0;
    return key4;
  }
  const p = 31 - Math.clz32(lo & -lo);
  key4.len = 32 - p;
  // key = bit32 * 2^32 + lo, a = (key - 2^p) / 2
  key4.a = (bit32 * 2147483648 + (lo - 2 ** p) / 2) >>> 0;
  return key4;
}

function attrs4(hi: number): number {
  const v = (hi >>> S4_VERDICT_SHIFT_HI) & 3;
  return (v === SV_PASS ? ATTR_ALLOW : 0) | ((hi & S4_MONITOR_HI) !== 0 ? ATTR_MONITOR : 0);
}

function attrs6(lo: number): number {
  const v = (lo >>> M6_VERDICT_SHIFT) & 3;
  return (v === SV_PASS ? ATTR_ALLOW : 0) | ((lo & M6_MONITOR) !== 0 ? ATTR_MONITOR : 0);
}
