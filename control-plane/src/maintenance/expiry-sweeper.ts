// Deletes rules whose expire_time has passed, as revisions (a delete delta
// goes out to the agents), well within a second of the expiry. Every control
// plane runs one; FOR UPDATE SKIP LOCKED lets them share the work without
// waiting on each other or deleting a rule twice.
import type { Logger } from 'pino';
import type { RuleStore } from '../store/rule-store.js';

const BATCH = 50_000;

export class ExpirySweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private failing = false;

  constructor(
    private readonly store: RuleStore,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.sweep()
        .then(() => {
          this.failing = false;
        })
        .catch((err) => {
          // Once per failing period: the database may be away for a while.
          if (!this.failing) this.logger.warn({ err }, 'expiry sweep failed; retrying every interval');
          this.failing = true;
        })
        .finally(() => {
          this.running = undefined;
          if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.intervalMs);
  }

  /** One pass; returns how many rules expired. */
  async sweep(): Promise<number> {
    let total = 0;
    while (!this.stopped && (await this.store.anyDue())) {
      const r = await this.store.expireDue(BATCH);
      if (r.value > 0) {
        total += r.value;
        this.logger.info({ expired: r.value, revision: r.revision.toString() }, 'expired rules removed');
      }
      if (r.value < BATCH) break;
    }
    return total;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
