// Polls `check` until it stops throwing (or returns true), for state that
// settles asynchronously (node state is flushed periodically). Never a
// timing assertion: the timeout is only a bound on a hang.
export async function eventually<T>(check: () => Promise<T> | T, what: string, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== false) return v;
      last = new Error('condition was false');
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const err = new Error(`timed out waiting for ${what}: ${last instanceof Error ? last.message : String(last)}`);
      (err as Error & { cause?: unknown }).cause = last;
      throw err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
