// The agent's whole rule state in typed arrays (no object per rule), and the
// one place that changes it:
//
//  - the DESIRED set: the latest full rule set from the control plane
//    (unexpired): rule records (rule-records.ts) linked into prefix records
//    (prefix-records.ts), one per kernel (table, prefix);
//  - the JOURNAL state: which rules the pinned journal holds, with which
//    counter slot and in which version (journal-shadow.ts);
//  - the KERNEL state: per prefix record, the entry the kernel holds, i.e.
//    the actual state the planner diffs against (kernel-state.ts);
//  - the DIRTY scope: what changed since the last successful apply
//    (dirty-scope.ts).
//
// The storage is private. Readers get read-only views (rules, prefixes,
// kernel, dirty); writers call intents: the desired side changes at once
// (upsert, remove, snapshots, expiry), the journal and kernel sides only when
// the pins are read back at start (load*) or a plan was applied (commit).

import type { OpBatch } from '../datapath/datapath.js';
import { DirtyScope, type DirtyView } from './dirty-scope.js';
import { JournalShadow } from './journal-shadow.js';
import { KernelState, type KernelView } from './kernel-state.js';
import type { Plan } from './plan-value.js';
import { PrefixRecords, type PrefixView } from './prefix-records.js';
import { TABLES, type TableId } from './prefix-key.js';
import {
  F_ALLOW,
  F_DESIRED,
  F_JOURNALED,
  F_SEEN,
  F_SHADOW,
  NONE,
  type RuleSpec,
  flagsOfOp,
  flagsOfSpec,
  tableOfFlags,
} from './rule-flags.js';
import { RuleRecords, type RuleView } from './rule-records.js';
import { isLocalRuleId } from './local-rules.js';

/** Where the table announces a desired rule's expiry (the expiry queue). */
export interface ExpirySink {
  push(r: number, id: bigint, atUnixMs: number): void;
}

/** The table's sizes, for health and metrics. */
export interface RuleCounts {
  readonly desiredCount: number;
  readonly journaledCount: number;
  /** Kernel entries per table, and in all. */
  readonly kernel: Pick<KernelView, 'count' | 'total'>;
}

export class RuleTable implements RuleCounts {
  private readonly recs: RuleRecords;
  private readonly pfxs: PrefixRecords;
  private readonly kern: KernelState;
  private readonly journal: JournalShadow;
  private readonly scope = new DirtyScope();
  readonly rules: RuleView;
  readonly prefixes: PrefixView;
  readonly kernel: KernelView;
  readonly dirty: DirtyView = this.scope;
  /** Desired allow rules per table and prefix length: [t * 129 + len]. */
  private readonly allowLens = new Int32Array(4 * 129);
  private desiredN = 0;
  /** Rules the control plane sent that cannot be applied: id -> reason. */
  private readonly invalid = new Map<bigint, string>();
  readonly invalidRules: ReadonlyMap<bigint, string> = this.invalid;
  private snapshotOpen = false;
  /** Agent-local rules (local-rules.ts), desired: id -> nothing (a handful). */
  private readonly local = new Set<bigint>();
  /** Scratch: an IPv4 address as bytes. */
  private readonly tmp4 = new Uint8Array(4);

  constructor(
    private readonly expiry?: ExpirySink,
    expectedRules = 1024,
  ) {
    const n = Math.max(16, expectedRules);
    this.recs = this.rules = new RuleRecords(n);
    this.pfxs = this.prefixes = new PrefixRecords(n);
    this.kern = this.kernel = new KernelState(n);
    this.journal = new JournalShadow(this.recs);
  }

  // ------------------------------------------------------------------ sizes

  get desiredCount(): number {
    return this.desiredN;
  }
  get journaledCount(): number {
    return this.journal.count;
  }
  get snapshotInProgress(): boolean {
    return this.snapshotOpen;
  }

  /** Makes room for `n` rules (and prefixes) at once. */
  reserve(n: number): void {
    this.recs.reserve(n);
    this.pfxs.reserve(n);
    this.kern.reserve(n);
  }

  /** Record index of rule `id`, or -1. */
  find(id: bigint): number {
    return this.recs.find(id);
  }

  /** Per table, the prefix lengths at which desired allows exist (ascending). */
  allowLengths(): number[][] {
    const out: number[][] = [[], [], [], []];
    for (const tb of TABLES) {
      const max = (tb & 1) === 1 ? 128 : 32;
      for (let l = 0; l <= max; l++) if (this.allowLens[tb * 129 + l]! > 0) out[tb]!.push(l);
    }
    return out;
  }

  // ---------------------------------------------------------- desired links

  /** Links desired rule r into its prefix record. */
  private link(r: number): void {
    const rs = this.recs;
    const ps = this.pfxs;
    const f = rs.flags[r]!;
    const t = tableOfFlags(f);
    const len = rs.len[r]!;
    const p = (t & 1) === 0 ? ps.findOrCreateV4(t, rs.addr4[r]!, len) : ps.findOrCreate(t, rs.addr6.get(r)!, 0, len);
    rs.pfx[r] = p;
    rs.next[r] = ps.head[p]!;
    ps.head[p] = r;
    this.scope.prefix(p);
    if ((f & F_ALLOW) !== 0) {
      this.allowLens[t * 129 + len]!++;
      this.scope.allowPrefix(p);
    }
  }

  private unlink(r: number): void {
    const rs = this.recs;
    const ps = this.pfxs;
    const p = rs.pfx[r]!;
    if (p === NONE) return;
    let prev = NONE;
    for (let x = ps.head[p]!; x !== NONE; x = rs.next[x]!) {
      if (x === r) {
        if (prev === NONE) ps.head[p] = rs.next[r]!;
        else rs.next[prev] = rs.next[r]!;
        break;
      }
      prev = x;
    }
    rs.pfx[r] = NONE;
    rs.next[r] = NONE;
    this.scope.prefix(p);
    if ((rs.flags[r]! & F_ALLOW) !== 0) {
      this.allowLens[ps.table[p]! * 129 + ps.len[p]!]!--;
      this.scope.allowPrefix(p);
    }
  }

  /** Frees a record that is neither desired nor journaled. */
  private freeRule(r: number): void {
    this.recs.release(r);
    this.journal.forget(r);
    this.scope.forgetRule(r);
  }

  /** Frees a prefix record with no desired rule and no kernel entry. */
  private freePrefixIfEmpty(p: number): void {
    const ps = this.pfxs;
    if (!ps.live(p) || ps.head[p] !== NONE || this.kern.entryOf(p) !== NONE) return;
    ps.release(p);
  }

  // ------------------------------------------------------------ desired side

  /**
   * Makes `spec` part of the desired set (idempotent). The caller validated
   * it and dropped it if already expired.
   */
  upsert(spec: RuleSpec): void {
    this.upsertRaw(spec.id, flagsOfSpec(spec), spec.prefix.bytes, 0, spec.prefix.len, spec.expireUnixMs);
  }

  /**
   * upsert() without objects: attribute flags (F_V6 | F_EGRESS | F_ALLOW |
   * F_MONITOR), the address at src[off..] (4 or 16 bytes, host bits zero),
   * prefix length, expiry (Unix ms, 0 = never).
   */
  upsertRaw(id: bigint, attrs: number, src: Uint8Array, off: number, len: number, expire: number): void {
    if (this.invalid.size > 0) this.invalid.delete(id);
    const rs = this.recs;
    let r = rs.find(id);
    if (r === NONE) {
      r = rs.alloc(id);
      rs.writeAttrs(r, attrs, src, off, len, expire);
      rs.flags[r] = rs.flags[r]! | F_DESIRED | F_SEEN;
      this.desiredN++;
      this.link(r);
      this.scope.rule(r);
      if (expire > 0) this.expiry?.push(r, id, expire);
      return;
    }
    const f = rs.flags[r]!;
    const same = rs.sameAttrs(r, attrs, src, off, len, expire);
    if (same && (f & F_DESIRED) !== 0) {
      rs.flags[r] = f | F_SEEN;
      return;
    }
    if (!same) {
      this.journal.keep(r);
      if ((f & F_DESIRED) !== 0) this.unlink(r);
      rs.writeAttrs(r, attrs, src, off, len, expire);
    }
    if ((f & F_DESIRED) === 0) this.desiredN++;
    rs.flags[r] = rs.flags[r]! | F_DESIRED | F_SEEN;
    this.link(r);
    this.scope.rule(r);
    if (expire > 0) this.expiry?.push(r, id, expire);
  }

  /** Removes rule `id` from the desired set; unknown ids and agent-local ones are ignored. */
  remove(id: bigint): void {
    if (this.invalid.size > 0) this.invalid.delete(id);
    if (this.local.has(id)) return;
    const r = this.recs.find(id);
    if (r !== NONE) this.removeRecord(r);
  }

  // ------------------------------------------------------ agent-local rules

  /** Makes agent-local rule `spec` (an id of the reserved range) desired; snapshots and the Sync stream leave it alone. */
  upsertLocal(spec: RuleSpec): void {
    if (!isLocalRuleId(spec.id)) throw new RangeError(`rule id ${spec.id} is not in the agent-local range`);
    this.local.add(spec.id);
    this.upsert(spec);
  }

  /** Removes agent-local rule `id` from the desired set. */
  removeLocal(id: bigint): void {
    if (!this.local.delete(id)) return;
    const r = this.recs.find(id);
    if (r !== NONE) this.removeRecord(r);
  }

  /** The desired agent-local rules. */
  localRules(): RuleSpec[] {
    const out: RuleSpec[] = [];
    for (const id of this.local) {
      const r = this.recs.find(id);
      if (r !== NONE) out.push(this.recs.spec(r));
    }
    return out;
  }

  /** Removes record `r` from the desired set. */
  private removeRecord(r: number): void {
    const rs = this.recs;
    const f = rs.flags[r]!;
    if ((f & F_DESIRED) === 0) return;
    this.unlink(r);
    rs.flags[r] = f & ~(F_DESIRED | F_SEEN);
    this.desiredN--;
    if ((f & F_JOURNALED) === 0) this.freeRule(r);
    else this.scope.rule(r);
  }

  /**
   * Local expiry: removes record r from the desired set if it still holds
   * rule `id`, desired, with expiry `at`. Returns true if it did.
   */
  expireRecord(r: number, id: bigint, at: number): boolean {
    const rs = this.recs;
    if (r >= rs.high || rs.id[r] !== id || (rs.flags[r]! & F_DESIRED) === 0 || rs.expireOf(r) !== at) return false;
    this.removeRecord(r);
    return true;
  }

  /** A rule the kernel cannot take: refused (NACK) until deleted or replaced. */
  markInvalid(id: bigint, reason: string): void {
    // The last valid version (if any) leaves the desired set: the control
    // plane no longer wants it. (An agent-local id stays: remove() skips it.)
    this.remove(id);
    this.invalid.set(id, reason);
  }

  /** Starts a full snapshot: rules not upserted before endSnapshot() leave the desired set. */
  beginSnapshot(expectedTotal: number): void {
    if (expectedTotal > 0) this.reserve(expectedTotal);
    const rs = this.recs;
    for (let r = 0; r < rs.high; r++) rs.flags[r] = rs.flags[r]! & ~F_SEEN;
    this.invalid.clear();
    this.snapshotOpen = true;
    // A snapshot is planned in full: no need to record each change.
    this.scope.markAll();
  }

  /** Everything is in scope for the next plan (the per-change sets are dropped). */
  markAllDirty(): void {
    this.scope.markAll();
  }

  endSnapshot(): void {
    const rs = this.recs;
    // Agent-local rules are not the control plane's to remove.
    for (const id of this.local) {
      const r = rs.find(id);
      if (r !== NONE) rs.flags[r] = rs.flags[r]! | F_SEEN;
    }
    for (let r = 0; r < rs.high; r++) {
      const f = rs.flags[r]!;
      if ((f & F_DESIRED) !== 0 && (f & F_SEEN) === 0) this.removeRecord(r);
    }
    this.snapshotOpen = false;
    this.scope.markAll();
  }

  /** A snapshot cut short (stream lost): keep what arrived, remove nothing. */
  abortSnapshot(): void {
    this.snapshotOpen = false;
  }

  // ------------------------------------------------- pinned state, at start

  /** journal.upsert op i of a batch read back from the journal (desired unless expired). Returns its record. */
  loadJournalOp(b: OpBatch, i: number, desired: boolean): number {
    const id = b.id[i]!;
    const rs = this.recs;
    if (rs.find(id) !== NONE) throw new Error(`journal holds rule ${id} twice`);
    const r = rs.alloc(id);
    const table = b.table[i]!;
    const expire = b.expire[i]!;
    if ((table & 1) === 0) {
      const w = b.addr4[i]!;
      const t4 = this.tmp4;
      t4[0] = w >>> 24;
      t4[1] = (w >>> 16) & 255;
      t4[2] = (w >>> 8) & 255;
      t4[3] = w & 255;
      rs.writeAttrs(r, flagsOfOp(table, b.attrs[i]!), t4, 0, b.len[i]!, expire);
    } else {
      rs.writeAttrs(r, flagsOfOp(table, b.attrs[i]!), b.addr6, i * 16, b.len[i]!, expire);
    }
    this.journal.journal(r, b.slot[i]!);
    if (desired && isLocalRuleId(id)) this.local.add(id);
    if (desired) {
      rs.flags[r] = rs.flags[r]! | F_DESIRED;
      this.desiredN++;
      this.link(r);
      if (expire > 0) this.expiry?.push(r, id, expire);
    }
    this.scope.rule(r);
    return r;
  }

  /** entry.upsert op i of a batch read back from the kernel tables. */
  loadKernelOp(b: OpBatch, i: number): void {
    const p = this.pfxs.findOrCreateOfOp(b, i);
    this.kern.set(p, b.table[i]! as TableId, b.slot[i]! * 4 + (b.attrs[i]! & 3));
    this.scope.prefix(p);
  }

  // ------------------------------------------------------------- op writers

  /** Appends a journal.upsert of rule r's desired version with counter slot `slot`. */
  writeDesiredJournalUpsert(out: OpBatch, r: number, slot: number): void {
    this.recs.writeJournalUpsert(out, r, slot);
  }

  /** Appends a journal.upsert of rule r as the journal holds it (its shadowed version if changed since). */
  writeJournaledUpsert(out: OpBatch, r: number): void {
    this.journal.writeUpsert(out, r);
  }

  /** True if journal.upsert op i equals rule r as the journal holds it (prefix masked on both sides). */
  sameJournalOp(r: number, b: OpBatch, i: number): boolean {
    return this.journal.sameAsOp(r, b, i);
  }

  /** Appends an entry.upsert of prefix record p with packed entry `packed` (packEntry). */
  writeEntryUpsert(out: OpBatch, p: number, packed: number): void {
    this.pfxs.writeEntryUpsert(out, p, packed);
  }

  /** Appends an entry.delete of prefix record p. */
  writeEntryDelete(out: OpBatch, p: number): void {
    this.pfxs.writeEntryDelete(out, p);
  }

  /** The prefix record of op i's prefix (table, address, length; masked), or -1. */
  prefixOfOp(b: OpBatch, i: number): number {
    return this.pfxs.ofOp(b, i);
  }

  // ----------------------------------------------------------------- commit

  /** Records the journal and kernel sides of an applied plan; nothing is dirty after. */
  commit(pl: Plan): void {
    const rs = this.recs;
    const js = this.journal;
    for (let i = 0; i < pl.newRules.length; i++) js.journal(pl.newRules[i]!, pl.newSlots[i]!);
    for (let i = 0; i < pl.journalUpserts.length; i++) {
      const r = pl.journalUpserts[i]!;
      if ((rs.flags[r]! & F_SHADOW) !== 0) js.journal(r, rs.slot[r]!);
    }
    for (let i = 0; i < pl.journalDeletes.length; i++) {
      const r = pl.journalDeletes[i]!;
      if (js.unjournal(r)) this.freeRule(r);
    }
    const ks = this.kern;
    const pt = this.pfxs.table;
    for (let i = 0; i < pl.upsertsEarly.length; i++) {
      const p = pl.upsertsEarly[i]!;
      ks.set(p, pt[p] as TableId, pl.upsertsEarlyWant[i]!);
    }
    for (let i = 0; i < pl.deletes.length; i++) {
      const p = pl.deletes[i]!;
      ks.set(p, pt[p] as TableId, NONE);
    }
    for (let i = 0; i < pl.upsertsLate.length; i++) {
      const p = pl.upsertsLate[i]!;
      ks.set(p, pt[p] as TableId, pl.upsertsLateWant[i]!);
    }
    for (let i = 0; i < pl.scopePfx.length; i++) this.freePrefixIfEmpty(pl.scopePfx[i]!);
    this.scope.clear();
  }

  // ------------------------------------------------------------ diagnostics

  /** The desired rule at record r as a RuleSpec (tests, diagnostics). */
  spec(r: number): RuleSpec {
    return this.recs.spec(r);
  }

  /** Every desired rule (tests and diagnostics; allocates). */
  desiredRules(): RuleSpec[] {
    const out: RuleSpec[] = [];
    const rs = this.recs;
    for (let r = 0; r < rs.high; r++) if ((rs.flags[r]! & F_DESIRED) !== 0) out.push(rs.spec(r));
    return out;
  }
}
