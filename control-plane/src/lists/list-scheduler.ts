// Refreshes subscribed lists when they are due. Every control-plane process
// runs one; a list is refreshed by whichever process takes its lock first
// (list-refresher.ts), and the others skip it, so it is fetched once per
// interval whatever the number of processes. One list at a time per process
// (bounded memory: one list's set is held at once).
import type { Logger } from 'pino';
import type { ListRefresher } from './list-refresher.js';
import type { ListStore } from './list-store.js';

const DUE_BATCH = 20;

export class ListScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: ListStore,
    private readonly refresher: ListRefresher,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.pass()
        .then(() => undefined)
        .catch((err) => this.logger.warn({ err }, 'list refresh pass failed'))
        .finally(() => {
          this.running = undefined;
          if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.intervalMs);
    this.timer.unref();
  }

  /** Refreshes every list due now; returns how many this process refreshed. */
  async pass(): Promise<number> {
    let n = 0;
    for (const name of await this.store.due(DUE_BATCH)) {
      if (this.stopped) break;
      try {
        if (await this.refresher.refreshIfDue(name)) n++;
      } catch (err) {
        this.logger.warn({ err, list: name }, 'list refresh failed');
      }
    }
    return n;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
