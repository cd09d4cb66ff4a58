// Writing a batch's ops into the generation in force (the apply's last
// step, after the checks and any swap to larger maps): the /24 pools given
// room, whole tables mapped for bulk work, the ops run one kind at a time in
// order, the per-length counts pinned, the meta marked dirty around the
// entry writes (a crash in between is recounted at the next open:
// recountAfterCrash).

import type { Logger } from 'pino';
import { OP, type OpBatch, type SyncMeta } from './datapath.js';
import { DatapathError } from './errors.js';
import type { GenState } from './gen-state.js';
import type { PinnedMeta } from './pinned-meta.js';
import type { GenUsage } from './sizing.js';
import { constants as osConstants } from 'node:os';

const E = osConstants.errno;

/**
 * Ops on one table above which an apply maps the whole table (~0.3 ms for
 * 16 MB, ~1 ms for an IPv6 table) instead of a window per touched page (~5 us).
 */
const BULK_OPS = 64;

/** The batch's ops into `s`, whose maps have room for `need` (apply-checks.ts batchNeeds); `sync` pinned with them. */
export function writeBatch(s: GenState, meta: PinnedMeta, b: OpBatch, need: GenUsage, sync?: SyncMeta): void {
  for (const t of s.tables) {
    if (!t.d24) continue;
    const more = need.blocks[t.id]! - t.d24.blocksInUse;
    if (more > 0 && !t.d24.ensureRoom(more)) {
      throw new DatapathError('apply', `${t.desc.direction} IPv4 table`, E.ENOSPC, `the /24 index needs ${need.blocks[t.id]} blocks`);
    }
  }
  mapForBulk(s, b);
  let touchesEntries = false;
  for (let i = 0; i < b.length; i++) {
    if (b.kind[i] === OP.entryUpsert || b.kind[i] === OP.entryDelete) {
      touchesEntries = true;
      break;
    }
  }
  if (touchesEntries) meta.update({ dirty: true });
  try {
    runOps(s, b);
  } catch (e) {
    // A write failed half-way: the /24 indexes follow what the maps now hold.
    if (touchesEntries) for (const t of s.tables) t.repairIndex();
    throw e;
  }
  if (touchesEntries) storeCounts(s, meta);
  if (touchesEntries || sync) meta.update({ dirty: false, ...(sync ? { revision: sync.revision, storeId: sync.storeId } : {}) });
}

/** Pins the per-length counts of the tables written since they were last pinned. */
export function storeCounts(s: GenState, meta: PinnedMeta): void {
  for (const t of s.tables) t.pinCounts((table, counts) => meta.writeCounts(table, counts));
}

/** Rebuilds the per-length counts and the /24 indexes from the maps, pins the counts, clears `dirty` (an open after a crash mid-apply). */
export function recountAfterCrash(s: GenState, meta: PinnedMeta, log: Logger | undefined): void {
  for (const t of s.tables) {
    const changed = t.recount();
    if (changed > 0) log?.warn({ table: t.id, changed }, 'direct /24 index rebuilt from the entries');
  }
  storeCounts(s, meta);
  meta.update({ dirty: false });
}

/** The batch's ops, each run of one kind at a time, in order. */
function runOps(s: GenState, b: OpBatch): void {
  const n = b.length;
  let i = 0;
  let turnedDeny: number[] = [];
  while (i < n) {
    const kind = b.kind[i]!;
    let j = i;
    while (j < n && b.kind[j] === kind) j++;
    switch (kind) {
      case OP.entryUpsert:
      case OP.entryDelete:
        entryOps(s, b, i, j, kind === OP.entryUpsert);
        break;
      case OP.journalUpsert:
        turnedDeny = turnedDeny.concat(s.journal.upsert(b, i, j));
        break;
      case OP.journalDelete:
        s.journal.delete(b, i, j);
        break;
      case OP.counterReset:
        s.counters.reset(b, i, j);
        break;
    }
    i = j;
  }
  // After the entries: from here on the slot counts drops (fw_events_abi.h, the marks).
  if (turnedDeny.length > 0) s.counters.markSlots(turnedDeny);
}

/** A run [i0, j0) of entry upserts or deletes, table by table. */
function entryOps(s: GenState, b: OpBatch, i0: number, j0: number, upsert: boolean): void {
  const perTable = new Array<number>(s.tables.length).fill(0);
  for (let i = i0; i < j0; i++) perTable[b.table[i]!]!++;
  for (const t of s.tables) {
    const n = perTable[t.id]!;
    if (n === 0) continue;
    if (upsert) t.upsert(b, i0, j0);
    else t.delete(b, i0, j0, n);
  }
}

/**
 * Maps whole hash tables (and the rule counters) up front when a batch
 * touches them often; a few ops map the pages they touch. The /24 block
 * pools are mapped in windows (direct24.ts).
 */
function mapForBulk(s: GenState, b: OpBatch): void {
  const perTable = new Array<number>(s.tables.length).fill(0);
  let resets = 0;
  for (let i = 0; i < b.length; i++) {
    const k = b.kind[i];
    if (k === OP.entryUpsert || k === OP.entryDelete) perTable[b.table[i]!]!++;
    else if (k === OP.counterReset) resets++;
  }
  for (const t of s.tables) if (perTable[t.id]! > BULK_OPS) t.mapAll();
  if (resets > BULK_OPS) s.counters.mapAll();
}
