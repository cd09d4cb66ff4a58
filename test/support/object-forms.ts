// The object forms of the datapath's bulk methods, for tests and benches only
// (the agent speaks columns: OpBatch). MapOp arrays in, KernelEntry and
// JournalRule arrays out, on any PrefixStore / CounterSource (the real
// datapath or the fake):
//
//   applyOps(dp, [{ kind: 'entry.upsert', entry }], { revision: 7n, storeId });
//   readEntries(dp); readJournal(dp); readRuleCounters(dp, 64);
//
// applyOps() checks what the columns cannot express (4 or 16 address bytes,
// integer lengths, u64 ids...) and is otherwise applyBatch() of the ops.

import type { Prefix } from '../../common/src/cidr.js';
import type { RuleAction, RuleMode } from '../../common/src/policy.js';
import {
  ATTR_ALLOW,
  ATTR_MONITOR,
  type CounterSource,
  DatapathError,
  type JournalRule,
  type KernelEntry,
  type MapOp,
  OpBatch,
  type PrefixStore,
  type SyncMeta,
  tableIndex,
} from '../../node-agent/src/datapath/datapath.js';

const EINVAL = 22;

/** OpBatch attrs of an action and mode. */
export function attrsOf(action: RuleAction, mode: RuleMode): number {
  return (action === 'allow' ? ATTR_ALLOW : 0) | (mode === 'monitor' ? ATTR_MONITOR : 0);
}

/** Appends one MapOp to a batch. */
export function pushOp(b: OpBatch, op: MapOp): void {
  switch (op.kind) {
    case 'entry.upsert': {
      const e = op.entry;
      b.entryUpsert(tableIndex(e.direction, e.prefix.family), e.prefix.bytes, 0, e.prefix.len, attrsOf(e.action, e.mode), e.slot);
      break;
    }
    case 'entry.delete':
      b.entryDelete(tableIndex(op.direction, op.prefix.family), op.prefix.bytes, 0, op.prefix.len);
      break;
    case 'journal.upsert': {
      const r = op.rule;
      const table = tableIndex(r.direction, r.prefix.family);
      b.journalUpsert(r.id, table, r.prefix.bytes, 0, r.prefix.len, attrsOf(r.action, r.mode), r.slot, r.expireUnixMs);
      break;
    }
    case 'journal.delete':
      b.journalDelete(op.id, op.slot);
      break;
    case 'counter.reset':
      b.counterReset(op.slot);
      break;
    default:
      throw new TypeError(`unknown op kind ${(op as { kind: string }).kind}`);
  }
}

/** A batch holding exactly these ops. */
export function batchOf(ops: readonly MapOp[]): OpBatch {
  const b = new OpBatch(Math.max(1, ops.length));
  for (const op of ops) pushOp(b, op);
  return b;
}

/** Every op of a batch as MapOp objects. */
export function batchOps(b: OpBatch): MapOp[] {
  const out: MapOp[] = new Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b.op(i);
  return out;
}

/** Refuses (EINVAL, before anything changes) ops the columns cannot carry. */
export function checkOps(ops: readonly MapOp[], counterSlots: number, target: string): void {
  const bad = (msg: string) => new DatapathError('apply', target, EINVAL, msg);
  const checkPrefix = (p: Prefix, where: number) => {
    const max = p.family === 4 ? 32 : p.family === 6 ? 128 : -1;
    if (max < 0) throw bad(`op ${where}: family must be 4 or 6`);
    if (p.bytes.length !== max / 8) throw bad(`op ${where}: IPv${p.family} prefix needs ${max / 8} bytes, got ${p.bytes.length}`);
    if (!Number.isInteger(p.len) || p.len < 0 || p.len > max) throw bad(`op ${where}: prefix length ${p.len} out of 0..${max}`);
  };
  const checkSlot = (slot: number, where: number) => {
    if (!Number.isInteger(slot) || slot < 0 || slot >= counterSlots) {
      throw bad(`op ${where}: counter slot ${slot} out of 0..${counterSlots - 1}`);
    }
  };
  const checkId = (id: bigint, where: number) => {
    if (id < 0n || id >= 2n ** 64n) throw bad(`op ${where}: rule id out of u64 range`);
  };
  ops.forEach((op, i) => {
    switch (op.kind) {
      case 'entry.upsert':
        checkPrefix(op.entry.prefix, i);
        checkSlot(op.entry.slot, i);
        break;
      case 'entry.delete':
        checkPrefix(op.prefix, i);
        break;
      case 'journal.upsert':
        checkPrefix(op.rule.prefix, i);
        checkSlot(op.rule.slot, i);
        checkId(op.rule.id, i);
        if (!Number.isSafeInteger(op.rule.expireUnixMs) || op.rule.expireUnixMs < 0)
          throw bad(`op ${i}: expiry ${op.rule.expireUnixMs} is not a Unix time in ms`);
        break;
      case 'journal.delete':
        checkId(op.id, i);
        break;
      case 'counter.reset':
        checkSlot(op.slot, i);
        break;
      default:
        throw bad(`op ${i}: unknown kind ${(op as { kind: string }).kind}`);
    }
  });
}

/** applyBatch() of the ops, after checkOps() (which throws at once). */
export function applyOps(dp: PrefixStore & { readonly pinDir?: string }, ops: readonly MapOp[], meta?: SyncMeta): Promise<void> {
  checkOps(ops, dp.capacity.counterSlots, dp.pinDir ?? 'datapath');
  return dp.applyBatch(batchOf(ops), meta);
}

/** Every entry in the four kernel tables. */
export function readEntries(dp: PrefixStore): KernelEntry[] {
  const out: KernelEntry[] = [];
  for (const b of dp.readEntryChunks()) {
    for (let i = 0; i < b.length; i++) out.push((b.op(i) as Extract<MapOp, { kind: 'entry.upsert' }>).entry);
  }
  return out;
}

/** The journal, by id. */
export function readJournal(dp: PrefixStore): JournalRule[] {
  const out: JournalRule[] = [];
  for (const b of dp.readJournalChunks()) {
    for (let i = 0; i < b.length; i++) out.push((b.op(i) as Extract<MapOp, { kind: 'journal.upsert' }>).rule);
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Summed per-CPU rule counters of slots [0, upTo) (cut at the capacity). */
export function readRuleCounters(dp: CounterSource, upTo: number): { packets: BigUint64Array; bytes: BigUint64Array } {
  const n = Math.max(0, Math.min(upTo, dp.capacity.counterSlots));
  const packets = new BigUint64Array(n);
  const bytes = new BigUint64Array(n);
  dp.readRuleCountersInto(0, packets, bytes);
  return { packets, bytes };
}
