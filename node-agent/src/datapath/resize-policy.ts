// When the maps of the generation in force are due other sizes (the rules
// are sizing.ts's): before an apply, the sizes its need takes; after one,
// larger sizes ahead (a part more than 3/4 full) or else smaller ones (a part
// at a quarter or less). What the maps hold, and the highest counter slot in
// use: looked for only when a shrink could follow, and again only after the
// journal halved since a look that found no room.

import type { DatapathCapacity } from './datapath.js';
import type { GenState } from './gen-state.js';
import { type GenLimits, type GenSizes, type GenUsage, MIN_SLOTS, grow, growAhead, shrink } from './sizing.js';

export interface ResizeHost {
  readonly capacity: DatapathCapacity;
  /** Sizes the maps keep at least (BpfDatapathOptions.reserve). */
  readonly reserve: Partial<DatapathCapacity>;
  /** The generation in force and its sizes. */
  current(): { readonly state: GenState; readonly sizes: GenSizes };
}

export class ResizePolicy {
  /** Rules in the journal at the last look for a smaller counter size that found none (Infinity: none yet). */
  private slotCheckAt = Number.POSITIVE_INFINITY;

  constructor(private readonly host: ResizeHost) {}

  /** The sizes an apply needing `need` takes: those in force (the same object) if they hold it. */
  forNeed(need: GenUsage): GenSizes {
    const { sizes } = this.host.current();
    const next = grow(sizes, need, this.limits());
    if (next !== sizes) this.slotCheckAt = Number.POSITIVE_INFINITY;
    return next;
  }

  /** Larger sizes if a part is more than 3/4 full (sizing.ts growAhead), else those in force. */
  ahead(): GenSizes {
    const { state, sizes } = this.host.current();
    const next = growAhead(sizes, this.held(state.journal.rules), this.limits());
    if (next !== sizes) this.slotCheckAt = Number.POSITIVE_INFINITY;
    return next;
  }

  /** Smaller sizes if a part holds a quarter of its size or less, else those in force. */
  smaller(): GenSizes {
    return shrink(this.host.current().sizes, this.usage(), this.limits());
  }

  /** What the maps hold, the counter slots up to the highest in use (a swap's sizes). */
  usage(): GenUsage {
    return this.held(this.slotsInUse());
  }

  limits(): GenLimits {
    const { capacity, reserve } = this.host;
    return { ...capacity, reservePrefixes: reserve.prefixesPerTable, reserveSlots: reserve.counterSlots };
  }

  /** What the maps hold: prefixes and /24 blocks per table, and `slots`. */
  private held(slots: number): GenUsage {
    const { tables } = this.host.current().state;
    return { prefixes: tables.map((t) => t.entries()), blocks: tables.map((t) => t.d24?.blocksInUse ?? 0), slots };
  }

  /**
   * The highest counter slot in use + 1 (journaled, counted or named by an
   * entry), looked for only when the journal holds a quarter of the slots or
   * less, and again only after it halved since a look that found no room.
   */
  private slotsInUse(): number {
    const { state: s, sizes } = this.host.current();
    const rules = s.journal.rules;
    if (sizes.slots <= MIN_SLOTS || rules * 4 > sizes.slots || rules * 2 > this.slotCheckAt) return sizes.slots;
    let high = Math.max(s.journal.highestSlot(), s.counters.highestNonZero());
    for (const t of s.tables) high = Math.max(high, t.maxSlot());
    if ((high + 1) * 4 > sizes.slots) this.slotCheckAt = rules;
    return high + 1;
  }
}
