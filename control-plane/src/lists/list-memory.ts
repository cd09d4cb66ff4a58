// What this process remembers of each list's rules between refreshes, so a
// refresh need not read a million CIDRs back from Postgres to diff against
// them: the set the list's rules held after this process's last write (or
// read) of them, with the rules' fingerprint then. Pure; the refresher
// checks the fingerprint against the store, under the list's row lock, before
// trusting the set (list-refresher.ts).
//
// The fingerprint is (count, highest write_id) of the list's rules. It
// changes whenever their set does: only a list write adds rules to a list,
// with a write_id above every earlier one (one sequence), whichever process
// made it; anything else (an operator deleting one of them, or taking it
// over by an update) only removes rules, which lowers the count.
import type { EntrySet } from './entry-set.js';

export interface RulesFingerprint {
  readonly count: number;
  /** The highest write_id among them ("0" when there are none). */
  readonly maxWriteId: bigint;
}

export function sameFingerprint(a: RulesFingerprint, b: RulesFingerprint): boolean {
  return a.count === b.count && a.maxWriteId === b.maxWriteId;
}

interface Remembered {
  readonly fingerprint: RulesFingerprint;
  readonly entries: EntrySet;
}

export class ListMemory {
  private readonly lists = new Map<bigint, Remembered>();

  /** The list's rules, if remembered with this fingerprint (else forgets them). */
  entries(listId: bigint, now: RulesFingerprint): EntrySet | undefined {
    const r = this.lists.get(listId);
    if (!r) return undefined;
    if (sameFingerprint(r.fingerprint, now) && r.entries.size === now.count) return r.entries;
    this.lists.delete(listId);
    return undefined;
  }

  remember(listId: bigint, fingerprint: RulesFingerprint, entries: EntrySet): void {
    this.lists.set(listId, { fingerprint, entries });
  }

  forget(listId: bigint): void {
    this.lists.delete(listId);
  }

  get size(): number {
    return this.lists.size;
  }
}
