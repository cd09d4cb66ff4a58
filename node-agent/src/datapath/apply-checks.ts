// What an apply refuses before anything changes: malformed columns (EINVAL)
// and a batch that would overfill a table at any point of the order its ops
// run in (E2BIG: an upsert of a new prefix takes room, a delete of a present
// one frees it); and what it needs of the maps (prefixes at the peak, /24
// index blocks, counter slots), against which they grow first.

import { constants as osConstants } from 'node:os';
import { FW_STORE_ID_MAX, FW_TABLE_COUNT, tableFamily } from './abi.js';
import { OP, type OpBatch, type SyncMeta } from './datapath.js';
import { DatapathError } from './errors.js';
import { batchKey, maskedAddr4 } from './key-encoding.js';
import type { PrefixTable } from './prefix-table.js';
import type { GenUsage } from './sizing.js';

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

/**
 * The most prefixes table t holds at any point of the batch's order, if that
 * could be more than `limit` (an exact replay of its entry ops); else a
 * bound no more than `limit` (its entries plus its upserts, as if every one
 * were new and no delete freed anything). With `boundAbove` upserts or more
 * the bound is returned whatever it is (a replay costs a lookup per op).
 */
export function peakEntries(t: PrefixTable, b: OpBatch, limit: number, boundAbove = Number.POSITIVE_INFINITY): number {
  const now = t.entries();
  let upserts = 0;
  for (let i = 0; i < b.length; i++) if (b.kind[i] === OP.entryUpsert && b.table[i] === t.id) upserts++;
  if (now + upserts <= limit || upserts >= boundAbove) return now + upserts;
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
  return peak;
}

/** Upserts of one table above which a grow goes by the bound (every upsert new), not a replay. */
const REPLAY_UPSERTS = 65536;

/**
 * What the batch needs of the maps, against the sizes they have now: each
 * table's peak (exact where it could pass `sizes`, unless the batch is big:
 * then the bound, capped at `max`), each IPv4 table's /24
 * index blocks (those in use plus one for every /16 of a new entry longer
 * than /16 that has none: a bound), the highest counter slot it names + 1.
 */
export function batchNeeds(tables: readonly PrefixTable[], b: OpBatch, sizes: GenUsage, max: number): GenUsage {
  let slots = 0;
  const deep: number[][] = tables.map(() => []);
  for (let i = 0; i < b.length; i++) {
    const k = b.kind[i];
    if (k === OP.entryUpsert || k === OP.journalUpsert || k === OP.counterReset) slots = Math.max(slots, b.slot[i]! + 1);
    if (k === OP.entryUpsert && b.len[i]! > 16 && tables[b.table[i]!]?.d24) deep[b.table[i]!]!.push(maskedAddr4(b.addr4[i]!, b.len[i]!));
  }
  return {
    prefixes: tables.map((t) => Math.min(max, peakEntries(t, b, sizes.prefixes[t.id]!, REPLAY_UPSERTS))),
    blocks: tables.map((t) => (t.d24 ? t.d24.blocksInUse + t.d24.newBlocksFor(deep[t.id]!) : 0)),
    slots,
  };
}

/** Refuses (E2BIG) a batch that would make a table hold more than `cap` prefixes at any point of its order. */
export function checkCapacity(tables: readonly PrefixTable[], b: OpBatch, cap: number): void {
  for (const t of tables) {
    const peak = peakEntries(t, b, cap);
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
