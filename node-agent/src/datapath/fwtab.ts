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
// Little-endian hosts only (x86-64, arm64): slot words are read as u32 halves
// (their bits: slot-words.ts; the hash and geometry: fwtab-hash.ts; reading
// every entry: fwtab-scan.ts).

import { constants as osConstants } from 'node:os';
import { maskInto } from '../../../common/src/cidr.js';
import {
  FW_B4_SLOTS,
  FW_B4_WORDS,
  FW_B6_OVF,
  FW_B6_SLOTS,
  FW_B6_SPILL,
  FW_M6_VALID,
  FW_S4_CODE_SHIFT,
  FW_S4_SLOT_MASK,
  LAYOUT,
} from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { DatapathError } from './errors.js';
import { h2, keyHash, range32, tag4 } from './fwtab-hash.js';
import { entryAttrs, entrySlot, maskedAddr4, writeEntryValue } from './key-encoding.js';
import { MapRegion, rcuGracePeriod } from './libbpf.js';
import {
  B6_FLAGS,
  B6_WORDS,
  M6_KEY_MASK,
  M6_SLOT_HALF,
  S4_KEY_LO,
  S4_OVF_HI,
  S4_SPILL_HI,
  S6_META,
  S6_WORDS,
  attrs4,
  attrs6,
  code4,
  keyHi4,
  lo4,
  lo6,
  slot4,
} from './slot-words.js';

const E = osConstants.errno;

/** An entry's value: its counter slot and attrs (ATTR_ALLOW | ATTR_MONITOR). */
export interface TabValue {
  readonly slot: number;
  readonly attrs: number;
}

const B6_OVF_64 = BigInt(FW_B6_OVF);
const B6_SPILL_64 = BigInt(FW_B6_SPILL);

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
  /** The table's words as u32 halves (read only after the page is mapped; fwtab-scan.ts reads them too). */
  readonly w32: Uint32Array;
  readonly spill: BpfMap;
  /** IPv6 slots freed in this process: reusable after the next grace period. */
  private readonly pending = new Set<number>();
  /** IPv6: slots freed by an earlier process may be recent; one grace period before the first reuse. */
  private graceNeeded = true;
  private readonly s64 = new BigUint64Array(1);
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
  /** IPv4: the key as a slot word holds it: the length code's bits in the low half, and the high half. */
  private kLo = 0;
  private kHi = 0;
  /** IPv4: the key's tag. */
  private kTag = 0;

  /** fresh: a new table no program reads yet (IPv6 slots need no grace period before reuse). */
  constructor(family: 4 | 6, tab: BpfMap, spill: BpfMap, seed: number, nbuckets: number, fresh = false) {
    this.family = family;
    this.graceNeeded = !fresh;
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
    const a = maskedAddr4(v, len);
    kb[0] = a >>> 24;
    kb[1] = (a >>> 16) & 0xff;
    kb[2] = (a >>> 8) & 0xff;
    kb[3] = a & 0xff;
    this.kH1 = keyHash(this.seed, len, kb);
    this.kTag = tag4(this.kH1);
    this.kLo = code4(len) << FW_S4_CODE_SHIFT;
    this.kHi = keyHi4(a, len);
  }

  /** IPv6: the key (len, the 16 address bytes at off, host bits ignored). */
  private setKey6(len: number, bytes: Uint8Array, off: number): void {
    this.kLen = len;
    this.spillKey.writeUInt32LE(len, 0);
    const kb = this.kBytes;
    maskInto(kb, 0, bytes, off, 16, len);
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
    const b = range32(h2(this.kH1), this.nbuckets);
    this.region.ensure(b * this.bucketBytes, this.bucketBytes);
    return b;
  }

  // ---------------------------------------------------------------- lookups

  /** Slot word index of the current key in bucket b, or -1 (IPv6: the index of the slot's first word). */
  private scan(b: number): number {
    const w32 = this.w32;
    if (this.family === 4) {
      const lo = this.kLo;
      const hi = this.kHi;
      for (let i = 1; i <= FW_B4_SLOTS; i++) {
        const wi = b * FW_B4_WORDS + i;
        if ((w32[2 * wi]! & S4_KEY_LO) === lo && w32[2 * wi + 1] === hi) return wi;
      }
      return -1;
    }
    const want = FW_M6_VALID | this.kLen;
    const m = this.kM;
    for (let s = 0; s < FW_B6_SLOTS; s++) {
      const wi = b * B6_WORDS + s * S6_WORDS;
      if ((w32[2 * (wi + S6_META)]! & M6_KEY_MASK) !== want) continue;
      // hi and lo: the 16 address bytes as four u32 words.
      if (w32[2 * wi] === m[0] && w32[2 * wi + 1] === m[1] && w32[2 * wi + 2] === m[2] && w32[2 * wi + 3] === m[3]) return wi;
    }
    return -1;
  }

  private hasFlag(b: number, which: 'ovf' | 'spill'): boolean {
    if (this.family === 4) return (this.w32[2 * b * FW_B4_WORDS + 1]! & (which === 'ovf' ? S4_OVF_HI : S4_SPILL_HI)) !== 0;
    return (this.w32[2 * (b * B6_WORDS + B6_FLAGS)]! & (which === 'ovf' ? FW_B6_OVF : FW_B6_SPILL)) !== 0;
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
      const v = this.spill.lookup(this.spillKey)!;
      return { slot: entrySlot(v, 0), attrs: entryAttrs(v, 0) };
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
      const lo = this.w32[2 * wi]!;
      return { slot: slot4(lo), attrs: attrs4(lo) };
    }
    const meta = 2 * (wi + S6_META);
    return { slot: this.w32[meta + M6_SLOT_HALF]!, attrs: attrs6(this.w32[meta]!) };
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
    if (!Number.isInteger(slot) || slot < 0 || slot > FW_S4_SLOT_MASK)
      throw new DatapathError('write table entry', `slot ${slot}`, E.ERANGE);
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
      Atomics.store(this.w64, loc + S6_META, 0n);
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
      if (this.pending.has(b * B6_WORDS + s * S6_WORDS)) {
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
        if (w32[2 * wi] === 0 && w32[2 * wi + 1] === 0) return wi;
      }
      return -1;
    }
    for (let s = 0; s < FW_B6_SLOTS; s++) {
      const wi = b * B6_WORDS + s * S6_WORDS;
      const meta = 2 * (wi + S6_META);
      if (w32[meta] === 0 && w32[meta + 1] === 0 && !this.pending.has(wi)) return wi;
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
    Atomics.or(this.w64, b * B6_WORDS + B6_FLAGS, which === 'ovf' ? B6_OVF_64 : B6_SPILL_64);
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
      this.store4(wi, lo4(this.kLen, slot, attrs), this.kHi);
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
    this.s32[0] = lo6(this.kLen, attrs);
    this.s32[M6_SLOT_HALF] = slot;
    Atomics.store(this.w64, wi + S6_META, this.s64[0]!);
  }

  private writeSpill(attrs: number, slot: number): void {
    writeEntryValue(this.spillVal, 0, slot, attrs, this.kLen);
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
      for (let b = 0; b < this.nbuckets; b++) {
        const fw = b * B6_WORDS + B6_FLAGS;
        if (w32[2 * fw] !== 0) Atomics.store(this.w64, fw, 0n);
      }
    }
  }
}
