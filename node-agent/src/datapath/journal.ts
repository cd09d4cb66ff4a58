// The journal: fw_journal, rule id (u64) -> struct fw_journal_rule, the
// agent's desired rules kept with the pins. Written and read in batches of
// 16k elements (one syscall each), from and into OpBatch columns.

import { constants as osConstants } from 'node:os';
import { maskInto } from '../../../common/src/cidr.js';
import { FW_ACTION, FW_DIR, FW_MODE, LAYOUT, tableDirection, tableFamily, tableIndex } from './abi.js';
import type { BpfMap } from './bpf-map.js';
import { ATTR_ALLOW, ATTR_MONITOR, OpBatch } from './datapath.js';
import { DatapathError } from './errors.js';
import { maskedAddr4 } from './key-encoding.js';

const E = osConstants.errno;
const F = LAYOUT.fw_journal_rule.fields;
/** The key: a rule id. */
const KEY = 8;
/** Elements per batch syscall when writing. */
const WRITE_CHUNK = 16384;

export class Journal {
  constructor(private readonly map: BpfMap) {}

  /** Writes journal.upsert ops [i0, j0) (addresses masked). */
  upsert(b: OpBatch, i0: number, j0: number): void {
    const m = this.map;
    const vs = LAYOUT.fw_journal_rule.size;
    const size = Math.min(j0 - i0, WRITE_CHUNK);
    const keys = Buffer.alloc(size * KEY);
    const vals = Buffer.alloc(size * vs);
    for (let s = i0; s < j0; s += size) {
      const n = Math.min(size, j0 - s);
      for (let k = 0; k < n; k++) {
        keys.writeBigUInt64LE(b.id[s + k]!, k * KEY);
        writeRule(vals, k * vs, b, s + k);
      }
      const res = m.updateBatch(keys, vals, n);
      if (res.errno !== 0) {
        throw new DatapathError(
          'update batch of map',
          m.name,
          res.errno,
          res.errno === E.E2BIG ? `journal is full (${m.maxEntries} rules)` : undefined,
        );
      }
    }
  }

  /** Removes the rules of journal.delete ops [i0, j0) (absent ids are skipped). */
  delete(b: OpBatch, i0: number, j0: number): void {
    const size = Math.min(j0 - i0, WRITE_CHUNK);
    const keys = Buffer.alloc(size * KEY);
    for (let s = i0; s < j0; s += size) {
      const n = Math.min(size, j0 - s);
      for (let k = 0; k < n; k++) keys.writeBigUInt64LE(b.id[s + k]!, k * KEY);
      this.map.deleteMany(keys, n);
    }
  }

  /** Every rule as journal.upsert ops, `chunk` at a time into one reused batch. */
  *chunks(chunk: number): Generator<OpBatch> {
    const m = this.map;
    const out = new OpBatch(chunk);
    for (const { keys, values, count } of m.lookupChunks(chunk)) {
      for (let i = 0; i < count; i++) {
        if (out.full) {
          yield out;
          out.clear();
        }
        const o = i * m.valueStride;
        const family = values[o + F.family] === 6 ? 6 : 4;
        const table = tableIndex(values[o + F.direction] === FW_DIR.egress ? 'egress' : 'ingress', family);
        const attrs =
          (values[o + F.action] === FW_ACTION.allow ? ATTR_ALLOW : 0) | (values[o + F.mode] === FW_MODE.monitor ? ATTR_MONITOR : 0);
        const len = values.readUInt32LE(o + F.prefixlen);
        const slot = values.readUInt32LE(o + F.slot);
        const expire = Number(values.readBigUInt64LE(o + F.expire_unix_ms));
        const id = keys.readBigUInt64LE(i * KEY);
        if (family === 6) out.journalUpsert(id, table, values, o + F.addr, len, attrs, slot, expire);
        else out.journalUpsert(id, table, values.readUInt32BE(o + F.addr), 0, len, attrs, slot, expire);
      }
    }
    if (out.length > 0) yield out;
  }
}

/** struct fw_journal_rule of journal.upsert op i at `off` (address masked). */
function writeRule(v: Buffer, off: number, b: OpBatch, i: number): void {
  v.fill(0, off, off + LAYOUT.fw_journal_rule.size);
  const table = b.table[i]!;
  const len = b.len[i]!;
  v.writeUInt32LE(len, off + F.prefixlen);
  const family = tableFamily(table);
  if (family === 4) v.writeUInt32BE(maskedAddr4(b.addr4[i]!, len), off + F.addr);
  else maskInto(v, off + F.addr, b.addr6, i * 16, 16, len);
  v[off + F.family] = family;
  v[off + F.direction] = FW_DIR[tableDirection(table)];
  v[off + F.action] = (b.attrs[i]! & ATTR_ALLOW) !== 0 ? FW_ACTION.allow : FW_ACTION.deny;
  v[off + F.mode] = (b.attrs[i]! & ATTR_MONITOR) !== 0 ? FW_MODE.monitor : FW_MODE.enforce;
  v.writeUInt32LE(b.slot[i]!, off + F.slot);
  v.writeBigUInt64LE(BigInt(b.expire[i]!), off + F.expire_unix_ms);
}
