// A rule as the agent stores it, in one byte of flags per record, and a
// kernel entry packed in one int. Shared by the rule table's parts, the
// planner and the wire decoder (which writes flags without an object).

import { ATTR_ALLOW, ATTR_MONITOR, type JournalRule } from '../datapath/datapath.js';
import type { TableId } from './prefix-key.js';

/** A validated rule as the agent stores it (from the wire or the journal): a journal rule before it has a counter slot. */
export type RuleSpec = Omit<JournalRule, 'slot'>;

/** Attribute flags: the rule's table (F_V6, F_EGRESS) and verdict (F_ALLOW, F_MONITOR). */
export const F_V6 = 1;
export const F_EGRESS = 2;
export const F_ALLOW = 4;
export const F_MONITOR = 8;
/** State flags: in the desired set; in the journal; journaled in an older version (journal shadow); seen in the open snapshot. */
export const F_DESIRED = 16;
export const F_JOURNALED = 32;
export const F_SHADOW = 64;
export const F_SEEN = 128;
export const F_ATTRS = F_V6 | F_EGRESS | F_ALLOW | F_MONITOR;

/** No record (rule, prefix, slot or kernel entry). */
export const NONE = -1;

/** Kernel entry packed in an int: slot * 4 + allow * 2 + monitor (the low bits are OpBatch attrs). */
export function packEntry(slot: number, allow: boolean, monitor: boolean): number {
  return slot * 4 + (allow ? 2 : 0) + (monitor ? 1 : 0);
}

/** Attribute flags of a rule spec. */
export function flagsOfSpec(spec: RuleSpec): number {
  return (
    (spec.prefix.family === 6 ? F_V6 : 0) |
    (spec.direction === 'egress' ? F_EGRESS : 0) |
    (spec.action === 'allow' ? F_ALLOW : 0) |
    (spec.mode === 'monitor' ? F_MONITOR : 0)
  );
}

/** OpBatch attrs (ATTR_ALLOW | ATTR_MONITOR) of rule flags. */
export function attrsOfFlags(f: number): number {
  return ((f & F_ALLOW) !== 0 ? ATTR_ALLOW : 0) | ((f & F_MONITOR) !== 0 ? ATTR_MONITOR : 0);
}

/** Rule flags (F_V6 | F_EGRESS | F_ALLOW | F_MONITOR) of an op's table and attrs. */
export function flagsOfOp(table: number, attrs: number): number {
  return (
    ((table & 1) !== 0 ? F_V6 : 0) |
    ((table & 2) !== 0 ? F_EGRESS : 0) |
    ((attrs & ATTR_ALLOW) !== 0 ? F_ALLOW : 0) |
    ((attrs & ATTR_MONITOR) !== 0 ? F_MONITOR : 0)
  );
}

/** The kernel table of rule flags. */
export function tableOfFlags(f: number): TableId {
  return (((f & F_EGRESS) !== 0 ? 2 : 0) | ((f & F_V6) !== 0 ? 1 : 0)) as TableId;
}
