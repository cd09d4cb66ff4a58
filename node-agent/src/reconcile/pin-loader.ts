// Reading the pinned state back at start, in chunks of columns (no object
// per rule, whatever its size): the journal into the rule table (desired
// unless expired meanwhile), the kernel entries into its kernel state, and
// who owns which counter slot (and which free slots still hold counts) into
// a new slot pool.

import type { Logger } from 'pino';
import type { Datapath, SyncMeta } from '../datapath/datapath.js';
import type { RuleTable } from './rule-table.js';
import { SlotPool } from './slot-pool.js';

/** The datapath calls the load makes. */
export type PinnedState = Pick<
  Datapath,
  'capacity' | 'createdFresh' | 'readMeta' | 'usage' | 'readJournalChunks' | 'readEntryChunks' | 'readRuleCountersInto'
>;

export interface LoadSummary {
  readonly journalRules: number;
  readonly kernelEntries: number;
  /** Journal rules that expired while no agent ran: loaded as no longer desired. */
  readonly expired: number;
  /** The revision and store the kernel holds. */
  readonly meta: SyncMeta;
}

/** Counter slots per read (two BigUint64Arrays of this many). */
const COUNTER_CHUNK = 65536;

/** Loads the pinned state into `t` (a new, empty table) and returns the slot pool that goes with it. */
export function loadPinned(dp: PinnedState, t: RuleTable, log: Logger, now: number): { summary: LoadSummary; slots: SlotPool } {
  const meta = dp.readMeta();
  // Everything is in scope at start: no need to record each rule as dirty.
  t.markAllDirty();
  t.reserve(dp.usage().reduce((n, u) => n + u.entries, 0));
  const slotCap = dp.capacity.counterSlots;
  /** slot -> record of the journaled rule that owns it (-1: none). */
  const owners = new Int32Array(slotCap).fill(-1);
  let expired = 0;
  let journalRules = 0;
  for (const b of dp.readJournalChunks()) {
    for (let i = 0; i < b.length; i++) {
      journalRules++;
      const exp = b.expire[i]!;
      const desired = !(exp > 0 && exp <= now);
      if (!desired) expired++;
      const slot = b.slot[i]!;
      if (slot >= slotCap || owners[slot] !== -1) {
        // A journal entry without a usable slot: treat it as a new rule.
        const j = b.op(i);
        log.warn({ ruleId: String(b.id[i]), slot }, 'journal rule has an unusable counter slot; it gets a new one');
        if (desired && j.kind === 'journal.upsert') {
          t.upsert({
            id: j.rule.id,
            direction: j.rule.direction,
            prefix: j.rule.prefix,
            action: j.rule.action,
            mode: j.rule.mode,
            expireUnixMs: j.rule.expireUnixMs,
          });
        }
        continue;
      }
      owners[slot] = t.loadJournalOp(b, i, desired);
    }
  }
  let kernelEntries = 0;
  for (const b of dp.readEntryChunks()) {
    for (let i = 0; i < b.length; i++) t.loadKernelOp(b, i);
    kernelEntries += b.length;
  }
  t.markAllDirty();
  const slots = new SlotPool(slotCap);
  const nonZero = new Uint8Array(slotCap);
  if (!dp.createdFresh) {
    const packets = new BigUint64Array(Math.min(COUNTER_CHUNK, slotCap));
    const bytes = new BigUint64Array(packets.length);
    for (let first = 0; first < slotCap; first += packets.length) {
      const n = dp.readRuleCountersInto(first, packets, bytes);
      for (let k = 0; k < n; k++) if (packets[k] !== 0n || bytes[k] !== 0n) nonZero[first + k] = 1;
    }
  }
  slots.load(owners, (s) => nonZero[s] === 1);
  return { summary: { journalRules, kernelEntries, expired, meta }, slots };
}
