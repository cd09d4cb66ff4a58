// Removes nodes that have had no Sync stream for FLEETWALL_NODE_RETENTION,
// with their counters (so neither the nodes table nor /metrics keeps every
// name a Hello ever carried). Every control plane runs one; the delete is
// one statement, so two processes never remove a node twice.
import type { Logger } from 'pino';
import type { NodeStore } from '../store/node-store.js';

export class NodeReaper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private failing = false;

  constructor(
    private readonly store: NodeStore,
    private readonly retentionMs: number,
    private readonly intervalMs: number,
    private readonly onRemoved: (names: readonly string[]) => void,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.running !== undefined) return;
      this.running = this.reap()
        .then(() => {
          this.failing = false;
        })
        .catch((err) => {
          // Once per failing period (the database may be away for a while).
          if (!this.failing) this.logger.warn({ err }, 'removing absent nodes failed; retrying');
          this.failing = true;
        })
        .finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  /** One pass; returns the names removed. */
  async reap(): Promise<string[]> {
    const names = await this.store.removeAbsent(this.retentionMs);
    if (names.length > 0) {
      this.onRemoved(names);
      this.logger.info({ nodes: names.slice(0, 20), count: names.length }, 'removed nodes absent longer than the retention');
    }
    return names;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
