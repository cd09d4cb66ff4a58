// Benches stop cleanly on SIGINT (Ctrl-C), SIGTERM or SIGHUP: the signal is
// noted, the bench's work stops at its next checkpoint or wait and unwinds
// through its own finally blocks (pins, namespaces, children, Postgres), then
// the process ends by that same signal, so a shell or a parent sees how it
// ended. Further signals are not obeyed: an abandoned cleanup is what leaves
// pins and namespaces behind.
//
//   runBench('bench:x', main)      main(), then exit 0, 1 (error), or by the signal
//   await checkpoint()             between steps of long synchronous work: throws Interrupted
//   await sleep(ms)                a wait that ends early, with Interrupted
//   await untilInterrupted(work)   work, or Interrupted as soon as a signal comes (work then
//                                  ends at its own next checkpoint; see settleAfter)

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
  }
}

let received: NodeJS.Signals | undefined;
const wakers = new Set<(e: Interrupted) => void>();

function onSignal(signal: NodeJS.Signals): void {
  if (received) return;
  received = signal;
  process.stderr.write(`# ${signal}: stopping; cleaning up first\n`);
  const e = new Interrupted(signal);
  for (const w of wakers) w(e);
  wakers.clear();
}

/** The signal received, if any. */
export function interruption(): NodeJS.Signals | undefined {
  return received;
}

/** Throws Interrupted if a signal has come. Yields to the event loop first, so a signal that came during synchronous work is seen. */
export async function checkpoint(): Promise<void> {
  await new Promise<void>((r) => setImmediate(r));
  if (received) throw new Interrupted(received);
}

/** A promise that rejects with Interrupted when a signal comes (never resolves). */
function interrupted(): Promise<never> {
  return new Promise<never>((_, reject) => {
    if (received) reject(new Interrupted(received));
    else wakers.add(reject);
  });
}

/** Waits ms; rejects with Interrupted as soon as a signal comes. */
export async function sleep(ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let waker: ((e: Interrupted) => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      if (received) return reject(new Interrupted(received));
      timer = setTimeout(resolve, ms);
      waker = reject;
      wakers.add(reject);
    });
  } finally {
    clearTimeout(timer);
    if (waker) wakers.delete(waker);
  }
}

/**
 * `work`, or Interrupted as soon as a signal comes. Work that is then still
 * running goes on until its next checkpoint; settleAfter waits for that.
 */
export async function untilInterrupted<T>(work: Promise<T>): Promise<T> {
  work.catch(() => undefined);
  return Promise.race([work, interrupted()]);
}

/** Waits until `work` has settled (it stopped at a checkpoint), at most ms. */
export async function settleAfter(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    work.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((r) => (timer = setTimeout(r, ms))),
  ]);
  clearTimeout(timer);
}

/**
 * Runs a bench's main with the signal handlers installed; then exits 0, or 1
 * after printing the error, or, if a signal came, by that signal (after main's
 * cleanup, which an Interrupted error unwound through).
 */
export function runBench(name: string, main: () => Promise<void>): void {
  for (const s of SIGNALS) process.on(s, onSignal);
  // Once stopping, what is being torn down may throw where nothing awaits it (postgres.js does, from a
  // timer, when its server goes away under a transaction): note it and go on cleaning up.
  process.on('uncaughtException', (e) => {
    if (!received) {
      process.stderr.write(`${name} failed: ${e.stack ?? e.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`${name}: while stopping: ${e.message}\n`);
  });
  main().then(
    () => finish(name, undefined),
    // A Ctrl-C also kills a child the bench was waiting for synchronously (the whole group gets it): the
    // error can come before the signal's handler has run. Let pending signals land first.
    (e: unknown) => setTimeout(() => finish(name, e), 100),
  );
}

function finish(name: string, error: unknown): void {
  if (received) {
    if (error !== undefined && !(error instanceof Interrupted))
      process.stderr.write(`${name}: while stopping: ${error instanceof Error ? error.message : String(error)}\n`);
    for (const s of SIGNALS) process.removeAllListeners(s);
    process.kill(process.pid, received);
    return;
  }
  if (error === undefined) process.exit(0);
  process.stderr.write(`${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
}
