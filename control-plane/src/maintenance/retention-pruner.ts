// Prunes change-log rows older than the retention period; agents resuming
// from a revision before the new floor get a snapshot.
import type { Logger } from 'pino';
import type { ChangeLog } from '../store/change-log.js';

export class RetentionPruner {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private failing = false;

  constructor(
    private readonly changeLog: ChangeLog,
    private readonly retentionMs: number,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.running !== undefined) return;
      this.running = this.prune()
        .then(() => {
          this.failing = false;
        })
        .catch((err) => {
          if (!this.failing) this.logger.warn({ err }, 'change-log pruning failed; retrying every interval');
          this.failing = true;
        })
        .finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  async prune(): Promise<bigint> {
    const floor = await this.changeLog.prune(this.retentionMs);
    this.logger.debug({ floor: floor.toString() }, 'change log pruned');
    return floor;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
