// What changed since the last successful apply: the scope of the next plan.
// Either everything (after a snapshot, at start, after a refused full plan),
// or the rule records and prefix records touched since, plus the prefixes
// whose desired allows changed (the denies inside them need a look).

/** The dirty scope as its readers see it (read only). */
export interface DirtyView {
  /** Everything is in scope; the per-change sets are empty. */
  readonly all: boolean;
  readonly rules: ReadonlySet<number>;
  readonly prefixes: ReadonlySet<number>;
  /** Prefix records whose desired allow set changed. */
  readonly allowPrefixes: ReadonlySet<number>;
  /** Anything to plan. */
  readonly pending: boolean;
}

export class DirtyScope implements DirtyView {
  all = false;
  readonly rules = new Set<number>();
  readonly prefixes = new Set<number>();
  readonly allowPrefixes = new Set<number>();

  get pending(): boolean {
    return this.all || this.rules.size > 0 || this.prefixes.size > 0 || this.allowPrefixes.size > 0;
  }

  rule(r: number): void {
    if (!this.all) this.rules.add(r);
  }

  prefix(p: number): void {
    if (!this.all) this.prefixes.add(p);
  }

  allowPrefix(p: number): void {
    if (!this.all) this.allowPrefixes.add(p);
  }

  /** A freed rule record is no longer in scope (it may be reused). */
  forgetRule(r: number): void {
    this.rules.delete(r);
  }

  /** Everything is in scope for the next plan (the per-change sets are dropped). */
  markAll(): void {
    this.all = true;
    this.rules.clear();
    this.prefixes.clear();
    this.allowPrefixes.clear();
  }

  /** A plan was applied: nothing is pending. */
  clear(): void {
    this.all = false;
    this.rules.clear();
    this.prefixes.clear();
    this.allowPrefixes.clear();
  }
}
