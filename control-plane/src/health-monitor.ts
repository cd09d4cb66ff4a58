// What /healthz and grpc.health.v1 report: the database reachable (a query on
// the read pool, bounded in time) and no batched writer (node state, counter
// totals) failing its flushes. Checked every second for grpc.health.v1
// (SERVING / NOT_SERVING, changed only when it changes) and on every
// /healthz request. When the database answers again after a check found it
// unreachable, the failing writers are told to retry now (their backoff may
// have grown to 30 s during the outage).
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import type { WriterHealth } from './store/flush-loop.js';

export interface HealthReport {
  readonly status: 'ok' | 'unavailable';
  /** Why not ok: the database is unreachable, or a writer is failing. */
  readonly reason?: 'STORE_UNAVAILABLE' | 'WRITER_FAILING';
  readonly database: 'ok' | 'unreachable';
  readonly writers: readonly {
    readonly name: string;
    readonly ok: boolean;
    readonly failingSince?: string;
    readonly lastError?: string;
    readonly failures: number;
    readonly setAside: number;
  }[];
}

const PING_TIMEOUT_MS = 2000;
const INTERVAL_MS = 1000;

export class HealthMonitor {
  private timer: NodeJS.Timeout | undefined;
  private serving: boolean | undefined;
  private stopped = false;
  private databaseWasReachable = true;

  constructor(
    private readonly readSql: Sql,
    private readonly writers: readonly { readonly health: WriterHealth; retrySoon(): void }[],
    private readonly setServing: (serving: boolean) => void,
    private readonly logger: Logger,
  ) {}

  /** Reports SERVING now (the store was just opened), then follows the checks. */
  start(): void {
    this.apply(true);
    const tick = () => {
      void this.check().then((h) => {
        if (this.stopped) return;
        this.apply(h.status === 'ok');
        this.timer = setTimeout(tick, INTERVAL_MS);
        this.timer.unref();
      });
    };
    this.timer = setTimeout(tick, INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private apply(serving: boolean): void {
    if (this.stopped || serving === this.serving) return;
    if (this.serving !== undefined) this.logger[serving ? 'info' : 'warn']({ serving }, 'serving status changed');
    this.serving = serving;
    this.setServing(serving);
  }

  private async ping(): Promise<boolean> {
    let t: NodeJS.Timeout | undefined;
    try {
      const q = this.readSql`select 1`.execute();
      q.catch(() => undefined);
      await Promise.race([q, new Promise((_, reject) => (t = setTimeout(() => reject(new Error('timeout')), PING_TIMEOUT_MS)))]);
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(t);
    }
  }

  async check(): Promise<HealthReport> {
    const dbOk = await this.ping();
    if (dbOk && !this.databaseWasReachable) for (const w of this.writers) w.retrySoon();
    this.databaseWasReachable = dbOk;
    const writers = this.writers.map(({ health: w }) => ({
      name: w.name,
      ok: w.failingSince === undefined,
      ...(w.failingSince ? { failingSince: w.failingSince.toISOString(), lastError: w.lastError?.slice(0, 200) } : {}),
      failures: w.consecutiveFailures,
      setAside: w.setAside,
    }));
    const writerFailing = writers.some((w) => !w.ok);
    return {
      status: dbOk && !writerFailing ? 'ok' : 'unavailable',
      ...(dbOk ? (writerFailing ? { reason: 'WRITER_FAILING' as const } : {}) : { reason: 'STORE_UNAVAILABLE' as const }),
      database: dbOk ? 'ok' : 'unreachable',
      writers,
    };
  }
}
