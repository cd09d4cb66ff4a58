// Polls `check` until it stops throwing (or returns true), for state that
// settles asynchronously (node state is flushed periodically). Never a
// timing assertion: the timeout is only a bound on a hang.
//
// Give every assert.ok / assert() in a check a message. Without one, Node 20
// builds a failing assert.ok's message by reading the source file at the
// call's position, which under tsx is a column of the transformed one-line
// code, not of the .ts file; when the text there does not parse it parses
// the same text again, recursively, without end, and the process spins
// (nodejs/node#52677, #52962). A check fails on purpose until the state
// settles, so here that turns a passing test into a hang.
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
