// When the datapath's maps get other sizes, and waiting for them: an apply
// that needs larger maps waits for their swap (roomFor), and after each apply
// a swap it made due (grow ahead, or else shrink) runs in the background
// (afterApply; settled() waits for it, a failure is logged and the maps in
// force stay). The rules of when are resize-policy.ts's, the swap (one at a
// time, its load off the event loop) gen-swapper.ts's.

import type { DatapathCapacity } from './datapath.js';
import { GenSwapper, type SwapHost, type SwapStats, type SwapWhy } from './gen-swapper.js';
import { ResizePolicy } from './resize-policy.js';
import type { GenUsage } from './sizing.js';

/** What the resizer needs of its datapath: the swapper's host but what the policy answers (usage, limits). */
export interface ResizerHost extends Omit<SwapHost, 'usage' | 'limits'> {
  /** Sizes the maps keep at least (BpfDatapathOptions.reserve). */
  readonly reserve: Partial<DatapathCapacity>;
}

export class GenResizer {
  private readonly policy: ResizePolicy;
  private readonly swapper: GenSwapper;
  /** The last look for a swap an apply made due, and the swap it started (never rejects: resizeIfDue logs). */
  private resizing: Promise<void> = Promise.resolve();

  constructor(private readonly host: ResizerHost) {
    this.policy = new ResizePolicy({ capacity: host.capacity, reserve: host.reserve, current: () => host.current() });
    this.swapper = new GenSwapper({ ...host, usage: () => this.policy.usage(), limits: () => this.policy.limits() });
  }

  /** Swaps done and failed (memory(), the agent's /metrics and /healthz). */
  get stats(): SwapStats {
    return this.swapper.stats;
  }

  /** True while a generation swap is in flight (its load on a worker thread). */
  get busy(): boolean {
    return this.swapper.busy;
  }

  /**
   * An apply needing `need`: null when the maps in force hold it (write it in
   * this run of the loop: no swap lands between), else what to wait for
   * before looking again (a swap in flight, whose sizes may be enough, or one
   * to the sizes it needs; rejects with its error).
   */
  roomFor(need: GenUsage): Promise<void> | null {
    const next = this.policy.forNeed(need);
    if (next === this.host.current().sizes) return null;
    return this.swapper.busy ? this.swapper.settled() : this.swapper.swap(next, 'grow');
  }

  /** An apply resolved: the swap it made due, if any, starts now (swapper.busy) and goes on in the background. */
  afterApply(): void {
    // Not awaited: resizeIfDue() never rejects, and starts its swap before its first await.
    this.resizing = this.resizeIfDue();
  }

  /** Resolves once no swap is in flight, nor one an apply made due. */
  async settled(): Promise<void> {
    for (let r = this.resizing; ; r = this.resizing) {
      await r;
      await this.swapper.settled();
      if (r === this.resizing) return;
    }
  }

  /**
   * After an apply: swaps in larger maps if a part is more than 3/4 full
   * (sizing.ts growAhead), else smaller ones if a part holds a quarter of its
   * size or less; not while a swap is in flight. Errors are logged: an apply
   * that needs larger maps swaps them in itself.
   */
  private async resizeIfDue(): Promise<void> {
    const h = this.host;
    if (this.swapper.busy || h.closed()) return;
    let why: SwapWhy = 'grow';
    try {
      const { sizes } = h.current();
      let next = this.policy.ahead();
      if (next === sizes) {
        why = 'shrink';
        next = this.policy.smaller();
      }
      if (next !== sizes) await this.swapper.swap(next, why);
    } catch (e) {
      h.ctx.log?.warn(
        { error: (e as Error).message },
        why === 'grow'
          ? 'could not swap in larger maps ahead; an apply that needs them will'
          : 'could not swap in smaller maps; keeping these',
      );
    } finally {
      if (!h.closed()) h.current().state.release();
    }
  }
}
