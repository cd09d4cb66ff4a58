// Cleanups that must run however a test process ends: a normal end, a
// process.exit (the stall watchdog's exit 70 too), and SIGINT, SIGTERM or
// SIGHUP (Ctrl-C reaches the whole group; the test runner ends a file past
// --test-timeout with SIGTERM, and then no `finally` runs). After a signal the
// cleanups run and the process ends by that same signal, so the runner sees
// how it ended. Synchronous only: nothing asynchronous runs while a process
// exits. SIGKILL cannot be caught.
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const cleanups = new Set<() => void>();
let hooked = false;

function runAll(): void {
  for (const c of [...cleanups]) {
    cleanups.delete(c);
    try {
      c();
    } catch {
      /* the others still run */
    }
  }
}

/** Runs `fn` when the process ends unless the returned function was called first (the test cleaned up itself). */
export function onProcessEnd(fn: () => void): () => void {
  if (!hooked) {
    hooked = true;
    process.on('exit', runAll);
    for (const signal of SIGNALS) {
      process.once(signal, () => {
        runAll();
        process.kill(process.pid, signal);
      });
    }
  }
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}
