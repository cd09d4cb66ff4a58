// What an apply refuses before anything changes: malformed columns (EINVAL)
// and a batch that would overfill a table at any point of the order its ops
// run in (E2BIG: an upsert of a new prefix takes room, a delete of a present
// one frees it).

import { constants as osConstants } from 'node:os';
import { FW_STORE_ID_MAX, FW_TABLE_COUNT, tableFamily } from './abi.js';
import { OP, type OpBatch, type SyncMeta } from './datapath.js';
import { DatapathError } from './errors.js';
import { batchKey } from './key-encoding.js';
import type { PrefixTable } from './prefix-table.js';

const E = osConstants.errno;

/** Refuses (EINVAL) a batch whose columns are out of range, or a store id the meta cannot hold. */
export function validateBatch(b: OpBatch, meta: SyncMeta | undefined, counterSlots: number, target: string): void {
  const bad = (msg: string) => new DatapathError('apply', target, E.EINVAL, msg);
  if (b.length > b.capacity) throw bad(`batch length ${b.length} exceeds its capacity ${b.capacity}`);
  for (let i = 0; i < b.length; i++) {
    const k = b.kind[i]!;
    if (k < OP.entryUpsert || k > OP.counterReset) throw bad(`op ${i}: unknown kind ${k}`);
    if (k === OP.entryUpsert || k === OP.entryDelete || k === OP.journalUpsert) {
      const t = b.table[i]!;
      if (t >= FW_TABLE_COUNT) throw bad(`op ${i}: table ${t} out of 0..${FW_TABLE_COUNT - 1}`);
      const max = tableFamily(t) === 6 ? 128 : 32;
      if (b.len[i]! > max) throw bad(`op ${i}: prefix length ${b.len[i]} out of 0..${max}`);
    }
    if ((k === OP.entryUpsert || k === OP.journalUpsert || k === OP.counterReset) && b.slot[i]! >= counterSlots) {
      throw bad(`op ${i}: counter slot ${b.slot[i]} out of 0..${counterSlots - 1}`);
    }
    if (k === OP.journalUpsert) {
      const x = b.expire[i]!;
      if (!Number.isSafeInteger(x) || x < 0) throw bad(`op ${i}: expiry ${x} is not a Unix time in ms`);
    }
  }
  if (meta && Buffer.byteLength(meta.storeId, 'utf8') > FW_STORE_ID_MAX) {
    throw bad(`store id "${meta.storeId}" is longer than ${FW_STORE_ID_MAX} bytes`);
  }
}

/** Refuses (E2BIG) a batch that would make a table hold more than `cap` prefixes at any point of its order. */
export function checkCapacity(tables: readonly PrefixTable[], b: OpBatch, cap: number): void {
  const upserts = new Array<number>(tables.length).fill(0);
  for (let i = 0; i < b.length; i++) if (b.kind[i] === OP.entryUpsert) upserts[b.table[i]!]!++;
  for (const t of tables) {
    const now = t.entries();
    if (now + upserts[t.id]! <= cap) continue; // even if every upsert were new and no delete freed anything
    // Close to full: replay the batch's entry ops on this table, exactly.
    const state = new Map<number | string, boolean>();
    let count = now;
    let peak = now;
    for (let i = 0; i < b.length; i++) {
      const k = b.kind[i];
      if ((k !== OP.entryUpsert && k !== OP.entryDelete) || b.table[i] !== t.id) continue;
      const key = batchKey(b, i);
      let present = state.get(key);
      if (present === undefined) present = t.has(b, i);
      if (k === OP.entryUpsert) {
        if (!present) {
          state.set(key, true);
          if (++count > peak) peak = count;
        }
      } else if (present) {
        state.set(key, false);
        count--;
      }
    }
    if (peak > cap) {
      throw new DatapathError(
        'apply',
        `${t.desc.direction} IPv${t.desc.family} table`,
        E.E2BIG,
        `would hold ${peak} prefixes, capacity is ${cap}; nothing was changed`,
      );
    }
  }
}
