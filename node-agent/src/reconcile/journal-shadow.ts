// The journal state: which rules the pinned journal holds, with which counter
// slot (F_JOURNALED and RuleRecords.slot), and in which version. A journaled
// rule whose desired attributes changed keeps the version the journal holds
// in a small shadow map (F_SHADOW) until the change is applied, so a refused
// change can be repaired back to what the journal held.

import { OP, type OpBatch, type TableIndex } from '../datapath/datapath.js';
import { mask16, v4Mask, v4Word } from './prefix-key.js';
import { F_ATTRS, F_DESIRED, F_JOURNALED, F_SHADOW, F_V6, NONE, attrsOfFlags, tableOfFlags } from './rule-flags.js';
import type { RuleRecords } from './rule-records.js';

/** A journaled version of a rule that the desired side has since changed. */
interface ShadowVersion {
  readonly flags: number;
  readonly addr: Uint8Array;
  readonly len: number;
  readonly expire: number;
}

export class JournalShadow {
  private readonly shadow = new Map<number, ShadowVersion>();
  private journaled = 0;

  constructor(private readonly rules: RuleRecords) {}

  /** Rules the journal holds. */
  get count(): number {
    return this.journaled;
  }

  /** Rule r's attributes are about to change: a journaled rule keeps the version the journal holds. */
  keep(r: number): void {
    const rs = this.rules;
    const f = rs.flags[r]!;
    if ((f & F_JOURNALED) === 0 || (f & F_SHADOW) !== 0) return;
    this.shadow.set(r, { flags: f & F_ATTRS, addr: rs.addrBytes(r), len: rs.len[r]!, expire: rs.expireOf(r) });
    rs.flags[r] = f | F_SHADOW;
  }

  /** Rule r (as it is) is in the journal with counter slot `slot`: read back at start, or written by a plan. */
  journal(r: number, slot: number): void {
    const rs = this.rules;
    const f = rs.flags[r]!;
    if ((f & F_JOURNALED) === 0) this.journaled++;
    rs.flags[r] = (f | F_JOURNALED) & ~F_SHADOW;
    this.shadow.delete(r);
    rs.slot[r] = slot;
  }

  /** Rule r's journal entry is gone. Returns true if the record is no longer needed (not desired). */
  unjournal(r: number): boolean {
    const rs = this.rules;
    const f = rs.flags[r]!;
    if ((f & F_JOURNALED) !== 0) this.journaled--;
    rs.flags[r] = f & ~(F_JOURNALED | F_SHADOW);
    this.shadow.delete(r);
    rs.slot[r] = NONE;
    return (f & F_DESIRED) === 0;
  }

  /** A freed record has no shadow. */
  forget(r: number): void {
    this.shadow.delete(r);
  }

  /** Appends a journal.upsert of rule r as the journal holds it (its shadowed version if changed since). */
  writeUpsert(out: OpBatch, r: number): void {
    const rs = this.rules;
    const sh = this.shadow.get(r);
    if (!sh) {
      rs.writeJournalUpsert(out, r, rs.slot[r]!);
      return;
    }
    const f = sh.flags;
    out.journalUpsert(rs.id[r]!, tableOfFlags(f) as TableIndex, sh.addr, 0, sh.len, attrsOfFlags(f), rs.slot[r]!, sh.expire);
  }

  /** True if journal.upsert op i equals rule r as the journal holds it (prefix masked on both sides). */
  sameAsOp(r: number, b: OpBatch, i: number): boolean {
    const rs = this.rules;
    if (b.kind[i] !== OP.journalUpsert || b.id[i] !== rs.id[r]) return false;
    const sh = this.shadow.get(r);
    const f = sh ? sh.flags : rs.flags[r]!;
    const len = sh ? sh.len : rs.len[r]!;
    const expire = sh ? sh.expire : rs.expireOf(r);
    if (
      b.table[i] !== tableOfFlags(f) ||
      b.len[i] !== len ||
      b.attrs[i] !== attrsOfFlags(f) ||
      b.slot[i] !== rs.slot[r] ||
      b.expire[i] !== expire
    )
      return false;
    if ((f & F_V6) === 0) {
      const a = sh ? v4Word(sh.addr, 0) : rs.addr4[r]!;
      return (a & v4Mask(len)) >>> 0 === (b.addr4[i]! & v4Mask(len)) >>> 0;
    }
    const a = mask16(sh ? sh.addr : rs.addr6.get(r)!, len);
    const c = mask16(b.addr6, len, i * 16);
    for (let k = 0; k < 16; k++) if (a[k] !== c[k]) return false;
    return true;
  }
}
