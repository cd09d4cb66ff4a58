// The loop behind the batched writers (node state, counter totals): one
// flush at a time, on a timer and on demand; a failed flush is retried with
// exponential backoff and never leaves a rejected promise for the next one to
// inherit; its state (failing since when, why, rows set aside) is what
// /healthz and grpc.health.v1 report. Rows that can never be written are
// found by writeRows() and set aside, so one bad row never blocks the others.
import type { Logger } from 'pino';

export interface WriterHealth {
  readonly name: string;
  /** Set while flushes fail (they are retried). */
  readonly failingSince: Date | undefined;
  readonly lastError: string | undefined;
  readonly consecutiveFailures: number;
  /** Rows set aside since start because the database refuses them for good. */
  readonly setAside: number;
}

export interface FlushLoopOptions {
  readonly name: string;
  readonly intervalMs: number;
  readonly logger: Logger;
  /** Longest wait between retries after failures (default 30 s). */
  readonly maxBackoffMs?: number;
}

export class FlushLoop {
  private current: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failingSince: Date | undefined;
  private lastError: string | undefined;
  private failures = 0;
  private retryAt = 0;
  /** Bumped by retrySoon(): a flush already running when it came fails without arming the backoff. */
  private nudges = 0;
  /** The backoff's exponent: failures since the last success or retrySoon(). */
  private backoffStep = 0;
  private aside = 0;

  constructor(
    private readonly flushNow: () => Promise<void>,
    private readonly opts: FlushLoopOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (Date.now() < this.retryAt || this.current !== undefined) return;
      this.flush().catch(() => undefined);
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * Runs a flush that starts after this call (joining one already queued);
   * resolves when it wrote everything, rejects with its error. Callers that
   * do not care (readers, timers) catch; nothing is chained on a rejection.
   */
  flush(): Promise<void> {
    if (this.next !== undefined) return this.next;
    if (this.current === undefined) return this.run();
    const after = this.current.then(
      () => undefined,
      () => undefined,
    );
    this.next = after.then(() => {
      this.next = undefined;
      return this.run();
    });
    return this.next;
  }

  /** Starts a flush soon, outside the caller (after a disconnect, say). */
  kick(): void {
    this.flush().catch(() => undefined);
  }

  /**
   * The database is reachable again (the health check saw it come back):
   * a failing writer retries at its next tick instead of waiting out a
   * backoff that grew during the outage (up to maxBackoffMs), and the
   * backoff starts again from its shortest step. A flush running meanwhile
   * (it may have tried before the database was back) does not arm the
   * backoff if it fails.
   */
  retrySoon(): void {
    this.nudges++;
    this.backoffStep = 0;
    if (this.failingSince !== undefined) this.retryAt = 0;
  }

  /** Counts rows set aside (the writer logs each once). */
  setAside(n: number): void {
    this.aside += n;
  }

  get health(): WriterHealth {
    return {
      name: this.opts.name,
      failingSince: this.failingSince,
      lastError: this.lastError,
      consecutiveFailures: this.failures,
      setAside: this.aside,
    };
  }

  get failing(): boolean {
    return this.failingSince !== undefined;
  }

  private run(): Promise<void> {
    const nudges = this.nudges;
    const p = this.flushNow();
    this.current = p;
    p.then(
      () => {
        if (this.failingSince) {
          this.opts.logger.info({ writer: this.opts.name, failures: this.failures }, 'writes succeed again');
        }
        this.failingSince = undefined;
        this.lastError = undefined;
        this.failures = 0;
        this.backoffStep = 0;
        this.retryAt = 0;
      },
      (err: unknown) => {
        this.failures++;
        this.lastError = err instanceof Error ? err.message : String(err);
        if (!this.failingSince) {
          this.failingSince = new Date();
          this.opts.logger.warn({ err, writer: this.opts.name }, 'writing to the database failed; retrying with backoff');
        }
        if (this.nudges !== nudges) {
          this.retryAt = 0;
          return;
        }
        this.backoffStep++;
        const backoff = Math.min(this.opts.maxBackoffMs ?? 30_000, this.opts.intervalMs * 2 ** Math.min(this.backoffStep, 16));
        this.retryAt = Date.now() + backoff;
      },
    ).finally(() => {
      if (this.current === p) this.current = undefined;
    });
    return p;
  }
}

const POISON_CLASSES = ['22', '23', '54'];

/** A database error that says this data can never be written (a value out of range, a row too large), not that the database is away. */
export function isPoisonError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length === 5 && POISON_CLASSES.includes(code.slice(0, 2));
}

/**
 * Writes `rows` with `write` (one statement for the lot); when the database
 * refuses the data itself, halves the batch until the rows it refuses are
 * alone, writes the others and returns the refused ones. Any other error
 * (the database is unreachable, say) is thrown: nothing is set aside.
 */
export async function writeRows<R>(rows: readonly R[], write: (batch: readonly R[]) => Promise<void>): Promise<R[]> {
  if (rows.length === 0) return [];
  try {
    await write(rows);
    return [];
  } catch (e) {
    if (!isPoisonError(e)) throw e;
    if (rows.length === 1) return [rows[0]!];
    const mid = rows.length >> 1;
    const a = await writeRows(rows.slice(0, mid), write);
    const b = await writeRows(rows.slice(mid), write);
    return [...a, ...b];
  }
}
