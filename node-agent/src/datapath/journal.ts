// The journal: fw_journal[slot] = struct fw_journal_rule, the desired rule
// that owns each counter slot (an ARRAY sized with the rule counters, kept
// with the pins). Written in batches of 16k elements (one syscall each: an
// element is never half written, whatever happens to the process), read
// through a mapping of windows (MapRegion), from and into OpBatch columns.

import { constants as osConstants } from 'node:os';
import { maskInto } from '../../../common/src/cidr.js';
import { FW_ACTION, FW_DIR, FW_MODE, LAYOUT, tableDirection, tableFamily, tableIndex } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { ATTR_ALLOW, ATTR_MONITOR, OpBatch } from './datapath.js';
import { DatapathError } from './errors.js';
import { maskedAddr4 } from './key-encoding.js';
import { MapRegion } from './libbpf.js';

const E = osConstants.errno;
const F = LAYOUT.fw_journal_rule.fields;
const VS = LAYOUT.fw_journal_rule.size;
/** Elements per batch syscall when writing. */
const WRITE_CHUNK = 16384;
/** Slots per window when reading (640 KB). */
const READ_WINDOW = 16384;

export class Journal {
  readonly region: MapRegion;
  /** Slots the journal holds. */
  readonly slots: number;
  private readonly bytes: Buffer;
  private readonly u32: Uint32Array;
  /** Rules held (counted on first use, then kept up to date). */
  private held = -1;

  constructor(private readonly map: BpfMap) {
    this.slots = map.maxEntries;
    this.region = new MapRegion(map.fd, this.slots * VS, map.name);
    this.bytes = Buffer.from(this.region.buffer, 0, this.slots * VS);
    this.u32 = new Uint32Array(this.region.buffer, 0, (this.slots * VS) / 4);
  }

  close(): void {
    this.region.close();
  }

  /** Rules the journal holds. */
  get rules(): number {
    if (this.held < 0) {
      let n = 0;
      for (let first = 0; first < this.slots; first += READ_WINDOW) {
        const end = Math.min(this.slots, first + READ_WINDOW);
        this.region.ensure(first * VS, (end - first) * VS);
        for (let s = first; s < end; s++) if (this.bytes[s * VS + F.family] !== 0) n++;
        this.region.release();
      }
      this.held = n;
    }
    return this.held;
  }

  /**
   * Writes journal.upsert ops [i0, j0) (addresses masked) at their slots.
   * Returns the slots whose rule (the same id) turns from allow to deny:
   * their counters hold passes, which no drop event may carry.
   */
  upsert(b: OpBatch, i0: number, j0: number): number[] {
    const size = Math.min(j0 - i0, WRITE_CHUNK);
    const keys = Buffer.alloc(size * 4);
    const vals = Buffer.alloc(size * VS);
    const filled = new Set<number>();
    const turnedDeny: number[] = [];
    for (let s = i0; s < j0; s += size) {
      const n = Math.min(size, j0 - s);
      for (let k = 0; k < n; k++) {
        const slot = b.slot[s + k]!;
        keys.writeUInt32LE(slot, k * 4);
        writeRule(vals, k * VS, b, s + k);
        if (slot >= this.slots) continue;
        this.region.ensure(slot * VS, VS);
        const o = slot * VS;
        if (this.held >= 0 && !filled.has(slot) && this.bytes[o + F.family] === 0) filled.add(slot);
        if (
          this.bytes[o + F.action] === FW_ACTION.allow &&
          vals[k * VS + F.action] === FW_ACTION.deny &&
          this.bytes[o + F.family] !== 0 &&
          this.bytes.readBigUInt64LE(o + F.id) === b.id[s + k]
        )
          turnedDeny.push(slot);
      }
      this.write(keys, vals, n);
    }
    if (this.held >= 0) this.held += filled.size;
    return turnedDeny;
  }

  /** Empties the slots of journal.delete ops [i0, j0) that still hold their rule (others are skipped). */
  delete(b: OpBatch, i0: number, j0: number): void {
    const picked = new Set<number>();
    for (let i = i0; i < j0; i++) {
      const slot = b.slot[i]!;
      if (slot >= this.slots) continue;
      this.region.ensure(slot * VS, VS);
      if (this.bytes[slot * VS + F.family] === 0 || this.bytes.readBigUInt64LE(slot * VS + F.id) !== b.id[i]) continue;
      picked.add(slot);
    }
    const keys = [...picked];
    for (let s = 0; s < keys.length; s += WRITE_CHUNK) {
      const n = Math.min(WRITE_CHUNK, keys.length - s);
      const kb = Buffer.alloc(n * 4);
      for (let k = 0; k < n; k++) kb.writeUInt32LE(keys[s + k]!, k * 4);
      this.write(kb, Buffer.alloc(n * VS), n);
    }
    if (this.held >= 0) this.held -= keys.length;
  }

  private write(keys: Buffer, vals: Buffer, n: number): void {
    const res = this.map.updateBatch(keys, vals, n);
    if (res.errno !== 0) {
      throw new DatapathError(
        'update batch of map',
        this.map.name,
        res.errno,
        res.errno === E.E2BIG ? `slot ${keys.readUInt32LE(res.done * 4)} is past the journal's ${this.slots}` : undefined,
      );
    }
  }

  /** The highest slot that holds a rule, or -1. */
  highestSlot(): number {
    for (let first = Math.floor((this.slots - 1) / READ_WINDOW) * READ_WINDOW; first >= 0; first -= READ_WINDOW) {
      const end = Math.min(this.slots, first + READ_WINDOW);
      this.region.ensure(first * VS, (end - first) * VS);
      for (let s = end - 1; s >= first; s--) if (this.bytes[s * VS + F.family] !== 0) return s;
    }
    return -1;
  }

  /** Every rule as journal.upsert ops, `chunk` at a time into one reused batch (in slot order). */
  *chunks(chunk: number): Generator<OpBatch> {
    const out = new OpBatch(chunk);
    const v = this.bytes;
    try {
      for (let first = 0; first < this.slots; first += READ_WINDOW) {
        const end = Math.min(this.slots, first + READ_WINDOW);
        this.region.ensure(first * VS, (end - first) * VS);
        for (let slot = first; slot < end; slot++) {
          const o = slot * VS;
          const fam = v[o + F.family];
          if (fam === 0) continue;
          if (out.full) {
            yield out;
            out.clear();
            this.region.ensure(first * VS, (end - first) * VS);
          }
          const family = fam === 6 ? 6 : 4;
          const table = tableIndex(v[o + F.direction] === FW_DIR.egress ? 'egress' : 'ingress', family);
          const attrs = (v[o + F.action] === FW_ACTION.allow ? ATTR_ALLOW : 0) | (v[o + F.mode] === FW_MODE.monitor ? ATTR_MONITOR : 0);
          const len = v[o + F.prefixlen]!;
          const expire = Number(v.readBigUInt64LE(o + F.expire_unix_ms));
          const id = v.readBigUInt64LE(o + F.id);
          if (family === 6) out.journalUpsert(id, table, v, o + F.addr, len, attrs, slot, expire);
          else out.journalUpsert(id, table, v.readUInt32BE(o + F.addr), 0, len, attrs, slot, expire);
        }
      }
      if (out.length > 0) yield out;
    } finally {
      this.region.release();
    }
  }

  /**
   * Copies every rule into another generation's journal (not read by anyone
   * yet), through both mappings; rules past its size must not exist.
   */
  copyTo(dst: Journal): void {
    dst.held = this.held;
    const n = Math.min(this.slots, dst.slots);
    for (let first = 0; first < n; first += READ_WINDOW) {
      const end = Math.min(n, first + READ_WINDOW);
      this.region.ensure(first * VS, (end - first) * VS);
      dst.region.ensure(first * VS, (end - first) * VS);
      dst.u32.set(this.u32.subarray((first * VS) / 4, (end * VS) / 4), (first * VS) / 4);
      this.region.release();
      dst.region.release();
    }
  }
}

/** struct fw_journal_rule of journal.upsert op i at `off` (address masked). */
function writeRule(v: Buffer, off: number, b: OpBatch, i: number): void {
  v.fill(0, off, off + VS);
  const table = b.table[i]!;
  const len = b.len[i]!;
  v.writeBigUInt64LE(b.id[i]!, off + F.id);
  v.writeBigUInt64LE(BigInt(b.expire[i]!), off + F.expire_unix_ms);
  const family = tableFamily(table);
  if (family === 4) v.writeUInt32BE(maskedAddr4(b.addr4[i]!, len), off + F.addr);
  else maskInto(v, off + F.addr, b.addr6, i * 16, 16, len);
  v[off + F.prefixlen] = len;
  v[off + F.family] = family;
  v[off + F.direction] = FW_DIR[tableDirection(table)];
  v[off + F.action] = (b.attrs[i]! & ATTR_ALLOW) !== 0 ? FW_ACTION.allow : FW_ACTION.deny;
  v[off + F.mode] = (b.attrs[i]! & ATTR_MONITOR) !== 0 ? FW_MODE.monitor : FW_MODE.enforce;
}
