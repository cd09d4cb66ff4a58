// The hash of one table: a bucketed two-choice hash table in an mmapable
// ARRAY map (layout and hash in bpf/include/fleetwall_abi.h).
//
// The programs compute the same hash in BPF and read one bucket per probe
// (IPv4: one 64-byte line of eight u64 slot words; IPv6: 128 bytes, five
// slots). This side maps the map's values into the process and changes a slot
// with single atomic stores, so a program never sees half an entry:
//   - IPv4: a whole entry (key, counter slot, action, mode) is one u64 word;
//     insert, replace and delete are one Atomics.store each.
//   - IPv6: the address is written into an empty slot first, then the meta
//     word (valid, length, slot, action, mode) with a release store; the
//     program reads meta first and the address through a dependency on it.
//     A freed slot is reused only after an RCU grace period.
// A key lives in its first bucket if a slot is free, else in its second (the
// first bucket gets the overflow flag first), else in the spill hash (the
// first bucket gets the spill flag first). A key never moves while it exists,
// so a program probing it finds the old or the new value, never nothing.
// IPv4 tables also keep the /16 filter: bit (a >> 16) is set before the
// first entry of length >= 16 inside that /16 is written and cleared after
// the last one is gone.
//
// Little-endian hosts only (x86-64, arm64): slot words are read as u32 halves.

import { constants as osConstants } from 'node:os';
import type { RuleAction, RuleMode } from '../../../common/src/policy.js';
import { FW_B4_SLOTS, FW_B6_SLOTS, FW_HASH_MUL, FW_HASH_MUL4, FW_HASH_MUL6, FW_HASH_SEED2, LAYOUT, readEntry, writeEntry } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { DatapathError } from './errors.js';
import { type Mapping, mmapMap, rcuGracePeriod } from './libbpf.js';

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

/** Buckets for a capacity: IPv4 at most half full, IPv6 at most 60% full. */
export function bucketsFor(family: 4 | 6, capacity: number): number {
  return Math.max(64, Math.ceil(family === 4 ? capacity / 4 : capacity / 3));
}

/** Spill hash size for a capacity (a key lands there only when both its buckets are full). */
export function spillSizeFor(capacity: number): number {
  return Math.max(1024, Math.ceil(capacity / 16));
}

// IPv4 slot word, as (lo, hi) u32 halves.
const S4_SLOT_SHIFT_HI = 1; // bit 33
const S4_ALLOW_HI = 1 << 27; // bit 59
const S4_MONITOR_HI = 1 << 28; // bit 60
const S4_SPILL_HI = 0x40000000; // bit 62
const S4_OVF_HI = 0x80000000; // bit 63
const S4_FLAGS_HI = 0xc0000000;
// IPv6 meta, low half; high half = the counter slot.
const M6_VALID = 0x100;
const M6_ALLOW = 0x200;
const M6_MONITOR = 0x400;
const B6_OVF = 1n;
const B6_SPILL = 2n;
const B6_WORDS = 16; // 128 bytes

/** Where a key is: a slot word index in the table, or the spill hash. */
type Loc = { readonly kind: 'slot'; readonly idx: number } | { readonly kind: 'spill' };

/** A key in hashing form. */
interface Key {
  readonly len: number;
  /** IPv4: the masked address as a number (host order). */
  readonly a: number;
  /** IPv6: the masked address as four little-endian u32 words of its network bytes. */
  readonly m: readonly [number, number, number, number];
  readonly bytes: Uint8Array;
  readonly h1: number;
}

export class HashTable {
  readonly family: 4 | 6;
  readonly nbuckets: number;
  private readonly seed: number;
  private readonly mapping: Mapping;
  private readonly w64: BigUint64Array;
  private readonly w32: Uint32Array;
  private readonly spill: BpfMap;
  private readonly f16Mapping: Mapping | null;
  private readonly f16: Uint8Array | null;
  private f16Counts: Uint32Array | null = null;
  /** IPv6 slots freed in this process: reusable after the next grace period. */
  private readonly pending = new Set<number>();
  /** IPv6: slots freed by an earlier process may be recent; one grace period before the first reuse. */
  private graceNeeded = true;
  private readonly s64 = new BigUint64Array(1);
  private readonly s32 = new Uint32Array(this.s64.buffer);
  private readonly spillKey: Buffer;
  private readonly spillVal = Buffer.alloc(LAYOUT.fw_entry.size);
  private closed = false;

  constructor(family: 4 | 6, tab: BpfMap, spill: BpfMap, f16: BpfMap | null, seed: number, nbuckets: number) {
    this.family = family;
    this.seed = seed >>> 0;
    this.nbuckets = nbuckets;
    if (nbuckets < 1 || nbuckets > tab.maxEntries) {
      throw new DatapathError('open table', tab.name, E.EINVAL, `configured for ${nbuckets} buckets, the map holds ${tab.maxEntries}`);
    }
    const bucketBytes = family === 4 ? LAYOUT.fw_bucket4.size : LAYOUT.fw_bucket6.size;
    this.mapping = mmapMap(tab.fd, tab.maxEntries * bucketBytes, tab.name);
    this.w64 = new BigUint64Array(this.mapping.buffer, 0, (nbuckets * bucketBytes) / 8);
    this.w32 = new Uint32Array(this.mapping.buffer, 0, (nbuckets * bucketBytes) / 4);
    this.spill = spill;
    this.spillKey = Buffer.alloc(family === 4 ? LAYOUT.fw_key4.size : LAYOUT.fw_key6.size);
    if (f16) {
      try {
        this.f16Mapping = mmapMap(f16.fd, LAYOUT.fw_f16.size, f16.name);
      } catch (e) {
        this.mapping.unmap();
        throw e;
      }
      this.f16 = new Uint8Array(this.f16Mapping.buffer, 0, LAYOUT.fw_f16.size);
    } else {
      this.f16Mapping = null;
      this.f16 = null;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.mapping.unmap();
    this.f16Mapping?.unmap();
  }

  // ---------------------------------------------------------------- keys

  private key(len: number, bytes: Uint8Array): Key {
    if (this.family === 4) {
      const v = ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
      const a = len === 0 ? 0 : (v & ((0xffffffff << (32 - len)) >>> 0)) >>> 0;
      const mb = new Uint8Array([a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff]);
      const h1 = Math.imul((a ^ this.seed ^ Math.imul(len, FW_HASH_MUL)) >>> 0, FW_HASH_MUL4) >>> 0;
      return { len, a, m: [0, 0, 0, 0], bytes: mb, h1 };
    }
    const mb = new Uint8Array(16);
    for (let i = 0; i < 16; i++) {
      const keep = len - i * 8;
      mb[i] = keep >= 8 ? bytes[i]! : keep <= 0 ? 0 : bytes[i]! & ((0xff << (8 - keep)) & 0xff);
    }
    const dv = new DataView(mb.buffer);
    const m: [number, number, number, number] = [dv.getUint32(0, true), dv.getUint32(4, true), dv.getUint32(8, true), dv.getUint32(12, true)];
    const x =
      this.seed ^
      Math.imul(len, FW_HASH_MUL) ^
      Math.imul(m[0], FW_HASH_MUL6[0]) ^
      Math.imul(m[1], FW_HASH_MUL6[1]) ^
      Math.imul(m[2], FW_HASH_MUL6[2]) ^
      Math.imul(m[3], FW_HASH_MUL6[3]);
    return { len, a: 0, m, bytes: mb, h1: fmix32(x >>> 0) };
  }

  private b1(k: Key): number {
    return range32(k.h1, this.nbuckets);
  }

  private b2(k: Key): number {
    return range32(fmix32((k.h1 ^ FW_HASH_SEED2) >>> 0), this.nbuckets);
  }

  /** IPv4 key as the low 33 bits of the slot word: (lo, bit 32). */
  private key4(k: Key): [number, number] {
    const v = k.a * 2 + 2 ** (32 - k.len); // < 2^33
    return [v % 4294967296, v >= 4294967296 ? 1 : 0];
  }

  // ---------------------------------------------------------------- lookups

  private scan4(b: number, lo: number, hi: number): number {
    const w32 = this.w32;
    for (let i = 0; i < FW_B4_SLOTS; i++) {
      const wi = b * FW_B4_SLOTS + i;
      if (w32[2 * wi] === lo && (w32[2 * wi + 1]! & 1) === hi) return wi;
    }
    return -1;
  }

  private scan6(b: number, k: Key): number {
    const w32 = this.w32;
    const want = M6_VALID | k.len;
    for (let s = 0; s < FW_B6_SLOTS; s++) {
      const wi = b * B6_WORDS + s * 3;
      if ((w32[2 * (wi + 2)]! & 0x1ff) !== want) continue;
      if (w32[2 * wi] === k.m[0] && w32[2 * wi + 1] === k.m[1] && w32[2 * wi + 2] === k.m[2] && w32[2 * wi + 3] === k.m[3]) return wi;
    }
    return -1;
  }

  private flags(b: number): { ovf: boolean; spill: boolean } {
    if (this.family === 4) {
      const hi = this.w32[2 * b * FW_B4_SLOTS + 1]!;
      return { ovf: (hi & S4_OVF_HI) !== 0, spill: (hi & S4_SPILL_HI) !== 0 };
    }
    const f = this.w32[2 * (b * B6_WORDS + 15)]!;
    return { ovf: (f & 1) !== 0, spill: (f & 2) !== 0 };
  }

  private locate(k: Key): Loc | null {
    const b1 = this.b1(k);
    const scan = (b: number) => (this.family === 4 ? this.scan4(b, ...this.key4(k)) : this.scan6(b, k));
    let idx = scan(b1);
    if (idx >= 0) return { kind: 'slot', idx };
    const f = this.flags(b1);
    if (f.ovf) {
      idx = scan(this.b2(k));
      if (idx >= 0) return { kind: 'slot', idx };
    }
    if (f.spill && this.spill.lookup(this.spillKeyOf(k))) return { kind: 'spill' };
    return null;
  }

  private spillKeyOf(k: Key): Buffer {
    this.spillKey.writeUInt32LE(k.len, 0);
    this.spillKey.set(k.bytes, 4);
    return this.spillKey;
  }

  /** The value stored for exactly this prefix, or null. */
  get(len: number, bytes: Uint8Array): TabValue | null {
    const k = this.key(len, bytes);
    const loc = this.locate(k);
    if (!loc) return null;
    if (loc.kind === 'spill') {
      const v = this.spill.lookup(this.spillKeyOf(k))!;
      const e = readEntry(v, 0);
      return { slot: e.slot, action: e.action, mode: e.mode };
    }
    return this.valueAt(loc.idx);
  }

  has(len: number, bytes: Uint8Array): boolean {
    return this.locate(this.key(len, bytes)) !== null;
  }

  private valueAt(wi: number): TabValue {
    if (this.family === 4) {
      const hi = this.w32[2 * wi + 1]!;
      return {
        slot: (hi >>> S4_SLOT_SHIFT_HI) & 0x3ffffff,
        action: hi & S4_ALLOW_HI ? 'allow' : 'deny',
        mode: hi & S4_MONITOR_HI ? 'monitor' : 'enforce',
      };
    }
    const lo = this.w32[2 * (wi + 2)]!;
    return {
      slot: this.w32[2 * (wi + 2) + 1]!,
      action: lo & M6_ALLOW ? 'allow' : 'deny',
      mode: lo & M6_MONITOR ? 'monitor' : 'enforce',
    };
  }

  // ---------------------------------------------------------------- writes

  /** Inserts or replaces one entry. Returns true if the prefix was new. */
  upsert(len: number, bytes: Uint8Array, v: TabValue): boolean {
    const k = this.key(len, bytes);
    const loc = this.locate(k);
    if (loc?.kind === 'slot') {
      this.writeValue(loc.idx, k, v);
      return false;
    }
    if (loc?.kind === 'spill') {
      this.writeSpill(k, v);
      return false;
    }
    this.f16Add(k);
    this.insertNew(k, v);
    return true;
  }

  /** Removes one entry. Returns true if it existed. */
  delete(len: number, bytes: Uint8Array): boolean {
    const k = this.key(len, bytes);
    const loc = this.locate(k);
    if (!loc) return false;
    if (loc.kind === 'spill') {
      this.spill.delete(this.spillKeyOf(k));
    } else if (this.family === 4) {
      this.store4(loc.idx, 0, 0);
    } else {
      Atomics.store(this.w64, loc.idx + 2, 0n);
      this.pending.add(loc.idx);
    }
    this.f16Remove(k);
    return true;
  }

  private insertNew(k: Key, v: TabValue): void {
    const b1 = this.b1(k);
    let idx = this.freeSlot(b1);
    if (idx < 0 && this.pendingIn(b1)) idx = this.freeSlot(b1);
    if (idx < 0) {
      const b2 = this.b2(k);
      let j = this.freeSlot(b2);
      if (j < 0 && this.pendingIn(b2)) j = this.freeSlot(b2);
      if (j >= 0) {
        this.setFlag(b1, 'ovf'); // before the key is where the program finds it only through the flag
        idx = j;
      }
    }
    if (idx < 0) {
      this.setFlag(b1, 'spill');
      this.writeSpill(k, v);
      return;
    }
    this.writeValue(idx, k, v, true);
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
      for (let i = 0; i < FW_B4_SLOTS; i++) {
        const wi = b * FW_B4_SLOTS + i;
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
      const wi = b * FW_B4_SLOTS;
      const hi = this.w32[2 * wi + 1]!;
      const bit = which === 'ovf' ? S4_OVF_HI : S4_SPILL_HI;
      if (hi & bit) return;
      this.s32[0] = this.w32[2 * wi]!;
      this.s32[1] = (hi | bit) >>> 0;
      Atomics.store(this.w64, wi, this.s64[0]!);
      return;
    }
    Atomics.or(this.w64, b * B6_WORDS + 15, which === 'ovf' ? B6_OVF : B6_SPILL);
  }

  /** One IPv4 slot word, keeping slot 0's bucket flags. */
  private store4(wi: number, lo: number, hi: number): void {
    if (wi % FW_B4_SLOTS === 0) hi = (hi & ~S4_FLAGS_HI) | (this.w32[2 * wi + 1]! & S4_FLAGS_HI);
    this.s32[0] = lo;
    this.s32[1] = hi >>> 0;
    Atomics.store(this.w64, wi, this.s64[0]!);
  }

  private writeValue(wi: number, k: Key, v: TabValue, fresh = false): void {
    if (v.slot < 0 || v.slot > 0x3ffffff) throw new DatapathError('write table entry', `slot ${v.slot}`, E.ERANGE);
    if (this.family === 4) {
      const [lo, bit32] = this.key4(k);
      const hi = bit32 | (v.slot << S4_SLOT_SHIFT_HI) | (v.action === 'allow' ? S4_ALLOW_HI : 0) | (v.mode === 'monitor' ? S4_MONITOR_HI : 0);
      this.store4(wi, lo, hi);
      return;
    }
    if (fresh) {
      if (this.graceNeeded) this.grace();
      // The address first (the slot is not valid yet), then meta with a release store.
      const w32 = this.w32;
      w32[2 * wi] = k.m[0];
      w32[2 * wi + 1] = k.m[1];
      w32[2 * wi + 2] = k.m[2];
      w32[2 * wi + 3] = k.m[3];
    }
    this.s32[0] = k.len | M6_VALID | (v.action === 'allow' ? M6_ALLOW : 0) | (v.mode === 'monitor' ? M6_MONITOR : 0);
    this.s32[1] = v.slot;
    Atomics.store(this.w64, wi + 2, this.s64[0]!);
  }

  private writeSpill(k: Key, v: TabValue): void {
    writeEntry(this.spillVal, 0, v.slot, v.action, v.mode, k.len);
    const errno = this.spill.tryUpdate(this.spillKeyOf(k), this.spillVal, 0n);
    if (errno !== 0) {
      throw new DatapathError('update map', this.spill.name, errno, errno === E.E2BIG ? `spill hash is full (${this.spill.maxEntries} entries)` : undefined);
    }
  }

  // ---------------------------------------------------------------- /16 filter (IPv4)

  private f16Counts_(): Uint32Array {
    if (!this.f16Counts) {
      const c = new Uint32Array(65536);
      this.forEach((len, bytes) => {
        if (len >= 16) c[(bytes[0]! << 8) | bytes[1]!]!++;
      });
      this.f16Counts = c;
    }
    return this.f16Counts;
  }

  private f16Add(k: Key): void {
    if (!this.f16 || k.len < 16) return;
    const x = k.a >>> 16;
    const c = this.f16Counts_();
    if (c[x]!++ === 0) Atomics.or(this.f16, x >>> 3, 1 << (x & 7));
  }

  private f16Remove(k: Key): void {
    if (!this.f16 || k.len < 16) return;
    const x = k.a >>> 16;
    const c = this.f16Counts_();
    if (c[x]! > 0 && --c[x]! === 0) Atomics.and(this.f16, x >>> 3, ~(1 << (x & 7)) & 0xff);
  }

  // ---------------------------------------------------------------- iteration

  /** Calls fn for every entry (table, then spill); bytes are masked. */
  forEach(fn: (len: number, bytes: Uint8Array, v: TabValue) => void): void {
    const w32 = this.w32;
    if (this.family === 4) {
      const n = this.nbuckets * FW_B4_SLOTS;
      for (let wi = 0; wi < n; wi++) {
        const lo = w32[2 * wi]!;
        const bit32 = w32[2 * wi + 1]! & 1;
        if (lo === 0 && bit32 === 0) continue;
        const key = bit32 * 4294967296 + lo;
        // The marker is the lowest set bit: len = 32 - its position.
        let p = 0;
        while (p < 32 && Math.floor(key / 2 ** p) % 2 === 0) p++;
        const a = (key - 2 ** p) / 2;
        fn(32 - p, new Uint8Array([a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff]), this.valueAt(wi));
      }
    } else {
      for (let b = 0; b < this.nbuckets; b++) {
        for (let s = 0; s < FW_B6_SLOTS; s++) {
          const wi = b * B6_WORDS + s * 3;
          const ml = w32[2 * (wi + 2)]!;
          if (!(ml & M6_VALID)) continue;
          const bytes = new Uint8Array(16);
          const dv = new DataView(bytes.buffer);
          for (let j = 0; j < 4; j++) dv.setUint32(j * 4, w32[2 * wi + j]!, true);
          fn(ml & 0xff, bytes, this.valueAt(wi));
        }
      }
    }
    const { keys, values, count } = this.spill.lookupAll();
    const ks = this.spill.keySize;
    for (let i = 0; i < count; i++) {
      const len = keys.readUInt32LE(i * ks);
      const e = readEntry(values, i * this.spill.valueStride);
      fn(len, new Uint8Array(keys.subarray(i * ks + 4, (i + 1) * ks)), { slot: e.slot, action: e.action, mode: e.mode });
    }
  }
}
