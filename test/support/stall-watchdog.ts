// A guard loaded into every test process by scripts/bootstrap.mjs
// (--import): when the main thread stops running its event loop - a
// synchronous spin, which no timer can interrupt, node:test's timeouts
// included - a worker thread prints the main thread's stack to stderr after
// STALL_MS and ends the process with exit code 70 ('exit' handlers run, so
// test Postgres servers stop). Off while a debugger is attached (a breakpoint
// stops the loop too).
import inspector from 'node:inspector';
import { Worker } from 'node:worker_threads';

/** FLEETWALL_TEST_STALL_MS overrides it (to see the guard work). */
const STALL_MS = Number(process.env.FLEETWALL_TEST_STALL_MS ?? 180_000);
const BEAT_MS = 1_000;

// Plain JavaScript (an eval worker, no loader): counts the main thread's
// beats; after STALL_MS without one, pauses it through the inspector, asks
// it for its stack and tells it to exit. SIGKILL if it does not answer (a
// blocking system call does not take the inspector's interrupts either).
const WORKER = `
const { workerData } = require('node:worker_threads');
const { Session } = require('node:inspector');
const { writeSync } = require('node:fs');
const beats = new Int32Array(workerData.beats);
const say = (s) => writeSync(2, '[stall-watchdog] ' + s + '\\n');
let last = -1;
let still = 0;
const timer = setInterval(() => {
  const now = Atomics.load(beats, 0);
  if (now !== last) {
    last = now;
    still = 0;
    return;
  }
  still += workerData.checkMs;
  if (still < workerData.stallMs) return;
  clearInterval(timer);
  say('pid ' + process.pid + ': the main thread has not run its event loop for ' + workerData.stallMs / 1000 + ' s; ending the process');
  setTimeout(() => {
    say('no answer from the main thread: SIGKILL');
    process.kill(process.pid, 'SIGKILL');
  }, 15_000);
  const s = new Session();
  s.connectToMainThread();
  const post = (method, params) => new Promise((res, rej) => s.post(method, params, (e, r) => (e ? rej(e) : res(r))));
  s.once('Debugger.paused', async ({ params }) => {
    const callFrameId = params.callFrames[0].callFrameId;
    try {
      const r = await post('Debugger.evaluateOnCallFrame', {
        callFrameId,
        expression: '(Error.stackTraceLimit = 10000, new Error("stalled here").stack)',
        returnByValue: true,
      });
      // Collapse recursion: one line per run of equal frames.
      const lines = [];
      for (const l of String(r.result.value).split('\\n').slice(1)) {
        const prev = lines[lines.length - 1];
        if (prev && prev.line === l) prev.n++;
        else lines.push({ line: l, n: 1 });
      }
      say('main thread stack:\\n' + lines.map((x) => x.line + (x.n > 1 ? ' (x' + x.n + ')' : '')).join('\\n'));
    } catch (e) {
      say('could not read the stack: ' + e.message);
    }
    // globalThis: node's own modules (the frame may be one) see process as a parameter only.
    post('Debugger.evaluateOnCallFrame', { callFrameId, expression: 'globalThis.process.exit(70)' }).catch(() => undefined);
    // The exiting main thread waits for this session to go.
    setTimeout(() => s.disconnect(), 500);
  });
  post('Debugger.enable', {})
    .then(() => post('Debugger.pause', {}))
    .catch((e) => say('could not pause the main thread: ' + e.message));
}, workerData.checkMs);
`;

if (inspector.url() === undefined) {
  const beats = new SharedArrayBuffer(4);
  const view = new Int32Array(beats);
  setInterval(() => Atomics.add(view, 0, 1), BEAT_MS).unref();
  const worker = new Worker(WORKER, {
    eval: true,
    execArgv: [],
    workerData: { beats, stallMs: STALL_MS, checkMs: 5 * BEAT_MS },
    stdout: false,
    stderr: false,
  });
  worker.on('error', (err) => process.stderr.write(`[stall-watchdog] not watching: ${err.message}\n`));
  worker.unref();
}
