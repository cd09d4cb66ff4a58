// The resources an open datapath holds (objects, mapped regions), closed
// together: in reverse order of opening, at close() or when an open fails
// part-way. One place, so no error path forgets one.

export interface Closable {
  close(): void;
}

export class Owned {
  private readonly items: Closable[] = [];

  /** Takes `r` into the set; returns it. */
  add<T extends Closable>(r: T): T {
    this.items.push(r);
    return r;
  }

  /** Closes everything taken so far, newest first (idempotent). */
  close(): void {
    for (const r of this.items.splice(0).reverse()) r.close();
  }
}
