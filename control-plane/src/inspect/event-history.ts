// The recent drop events this process knows (its agents' and, fanned in,
// every other process's), in arrival order: a bounded ring (by count and by
// age) that `since` reads, and the live watchers it feeds. A watcher has a
// bounded queue of its own: a slow one loses its oldest events (counted as
// `missed`), never the others'.

import type { InspectEvent } from './inspect-event.js';

export interface Watcher {
  /** Called with new events (already stored); returns false to be removed. */
  push(e: InspectEvent): void;
}

export class EventHistory {
  private readonly ring: (InspectEvent | undefined)[];
  private head = 0;
  private size = 0;
  private seq = 0n;
  private readonly watchers = new Set<Watcher>();

  constructor(
    readonly capacity: number,
    /** Events older than this are not returned (ms). */
    readonly maxAgeMs: number,
  ) {
    this.ring = new Array(Math.max(1, capacity));
  }

  get length(): number {
    return this.size;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  /** Stores events (sequence numbers given here) and hands them to every watcher. */
  append(events: readonly InspectEvent[]): void {
    for (const e of events) {
      e.seq = ++this.seq;
      e.wire.sequence = e.seq;
      const cap = this.ring.length;
      if (this.size === cap) {
        this.head = (this.head + 1) % cap;
        this.size--;
      }
      this.ring[(this.head + this.size) % cap] = e;
      this.size++;
    }
    if (events.length === 0) return;
    for (const w of this.watchers) for (const e of events) w.push(e);
  }

  /** Events received at or after sinceMs (by event time) and not older than maxAgeMs, oldest first. */
  since(sinceMs: number, now = Date.now()): InspectEvent[] {
    const floor = Math.max(sinceMs, now - this.maxAgeMs);
    const out: InspectEvent[] = [];
    const cap = this.ring.length;
    for (let k = 0; k < this.size; k++) {
      const e = this.ring[(this.head + k) % cap]!;
      if (e.timeMs >= floor) out.push(e);
    }
    return out;
  }

  /** Every stored event not older than maxAgeMs, oldest first (top sources). */
  *recent(fromMs: number): Iterable<InspectEvent> {
    const cap = this.ring.length;
    for (let k = 0; k < this.size; k++) {
      const e = this.ring[(this.head + k) % cap]!;
      if (e.timeMs >= fromMs) yield e;
    }
  }

  watch(w: Watcher): () => void {
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }
}

/** A watcher's bounded queue: the oldest event goes first when full (counted). */
export class WatcherQueue implements Watcher {
  private items: InspectEvent[] = [];
  missed = 0;
  private wake: (() => void) | null = null;

  constructor(
    private readonly capacity: number,
    private readonly accept: (e: InspectEvent) => boolean,
  ) {}

  push(e: InspectEvent): void {
    if (!this.accept(e)) return;
    if (this.items.length >= this.capacity) {
      this.items.shift();
      this.missed++;
    }
    this.items.push(e);
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Everything queued (empties the queue). */
  takeAll(): InspectEvent[] {
    const out = this.items;
    this.items = [];
    return out;
  }

  /** Resolves when an event is queued or the signal aborts. */
  wait(signal: AbortSignal): Promise<void> {
    if (this.items.length > 0 || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const onAbort = () => {
        this.wake = null;
        resolve();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.wake = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
    });
  }
}
