// Repeated authentication failures from one peer are slowed down: after
// FREE failures within the window, each refusal to that peer waits
// base * 2^(n - FREE), at most MAX. Memory is bounded (the least recently
// failing peers are forgotten first) and so is the number of refusals held
// back at once (beyond it, refusals go out at once). Pure but for the clock.
export interface PenaltyOptions {
  readonly free: number;
  readonly baseMs: number;
  readonly maxMs: number;
  /** Failures older than this are forgotten. */
  readonly windowMs: number;
  readonly maxPeers: number;
  readonly maxDelayed: number;
}

export const DEFAULT_PENALTY: PenaltyOptions = {
  free: 5,
  baseMs: 100,
  maxMs: 5000,
  windowMs: 60_000,
  maxPeers: 10_000,
  maxDelayed: 1000,
};

interface Entry {
  count: number;
  last: number;
}

export class PenaltyBox {
  private readonly peers = new Map<string, Entry>();
  private delayed = 0;

  constructor(
    private readonly opts: PenaltyOptions = DEFAULT_PENALTY,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records a failure from `peer`; returns how long to hold its refusal back (ms). */
  fail(peer: string): number {
    const t = this.now();
    let e = this.peers.get(peer);
    if (e && t - e.last > this.opts.windowMs) e = undefined;
    this.peers.delete(peer); // re-insert: most recent last
    e = { count: (e?.count ?? 0) + 1, last: t };
    this.peers.set(peer, e);
    if (this.peers.size > this.opts.maxPeers) this.peers.delete(this.peers.keys().next().value!);
    const over = e.count - this.opts.free;
    return over <= 0 || this.opts.maxMs <= 0 ? 0 : Math.min(this.opts.maxMs, this.opts.baseMs * 2 ** Math.min(over - 1, 30));
  }

  get size(): number {
    return this.peers.size;
  }

  /** Runs `send` after `delayMs`, or at once when too many refusals are already held back. */
  hold(delayMs: number, send: () => void): void {
    if (delayMs <= 0 || this.delayed >= this.opts.maxDelayed) {
      send();
      return;
    }
    this.delayed++;
    setTimeout(() => {
      this.delayed--;
      send();
    }, delayMs).unref();
  }
}
