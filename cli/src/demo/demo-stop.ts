// Why the demo stops, wherever the reason comes from: Ctrl-C or a signal
// (SIGINT, SIGTERM, SIGHUP), the embedded Postgres gone, or an error thrown
// where nothing awaits it (postgres.js throws a TypeError from a timer when
// its server vanishes under an open transaction). The first reason wins; the
// demo's loop and waits end early, and the demo cleans up in order. Further
// signals are not obeyed (an abandoned cleanup is what leaves namespaces and
// pins behind): one pressed again during the cleanup gets a note instead.
import { constants } from 'node:os';

export type StopReason =
  | { readonly kind: 'signal'; readonly signal: NodeJS.Signals }
  | { readonly kind: 'error'; readonly message: string };

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Thrown out of a step the demo was in when it was told to stop. */
export class Stopped extends Error {
  constructor(readonly reason: StopReason) {
    super(reason.kind === 'signal' ? `stopped by ${reason.signal}` : reason.message);
  }
}

export class DemoStop {
  private why: StopReason | undefined;
  private wake: () => void = () => undefined;
  private readonly stopped = new Promise<void>((resolve) => {
    this.wake = resolve;
  });
  private cleaning = false;
  private noted = false;
  private firstSignalAt = 0;
  private readonly onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now();
    this.firstSignalAt ||= now;
    // One Ctrl-C arrives more than once (the terminal's to the group, and npm's and the bootstrap's
    // passed on): only a later one is the user asking again.
    if (this.cleaning && !this.noted && now - this.firstSignalAt > 1000) {
      this.noted = true;
      this.say('still cleaning up (agent, pins, namespaces, Postgres): a moment');
    }
    this.stop({ kind: 'signal', signal });
  };
  private readonly onError = (e: unknown) => {
    const message = e instanceof Error ? e.message : String(e);
    if (this.cleaning) this.say(`(during cleanup: ${message})`);
    else this.stop({ kind: 'error', message: `unexpected error: ${message}` });
  };

  constructor(private readonly say: (line: string) => void) {}

  /** Takes over SIGINT, SIGTERM, SIGHUP and uncaught errors until uninstall(). */
  install(): void {
    for (const s of SIGNALS) process.on(s, this.onSignal);
    process.on('uncaughtException', this.onError);
    process.on('unhandledRejection', this.onError);
  }

  uninstall(): void {
    for (const s of SIGNALS) process.off(s, this.onSignal);
    process.off('uncaughtException', this.onError);
    process.off('unhandledRejection', this.onError);
  }

  /** Records the first reason to stop; none is taken once the cleanup has begun. */
  stop(reason: StopReason): void {
    if (this.why || this.cleaning) return;
    this.why = reason;
    this.wake();
  }

  get reason(): StopReason | undefined {
    return this.why;
  }

  /** From here on the demo is cleaning up: signals only get a note. */
  cleaningUp(): void {
    this.cleaning = true;
  }

  /** Throws Stopped if a reason to stop has come. */
  check(): void {
    if (this.why) throw new Stopped(this.why);
  }

  /** `p`, or Stopped as soon as a reason to stop comes (p's own failure is then ignored). */
  async race<T>(p: Promise<T>): Promise<T> {
    p.catch(() => undefined);
    const r = await Promise.race([p, this.stopped.then(() => undefined)]);
    this.check();
    return r as T;
  }

  /** Waits ms, or less if a reason to stop comes. */
  async sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((r) => (timer = setTimeout(r, ms))), this.stopped]);
    clearTimeout(timer);
  }

  /** The exit code for the reason: 128 + the signal's number, 1 for an error, 0 if none. */
  exitCode(): number {
    if (!this.why) return 0;
    return this.why.kind === 'signal' ? 128 + constants.signals[this.why.signal] : 1;
  }
}
