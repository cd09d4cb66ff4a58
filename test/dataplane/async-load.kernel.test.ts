// Issue 18, "bounded under attack": the agent's event loop never blocks on a
// program load. A generation swap loads its programs (the maps' creation and
// the verifier: 0.3-6 s under load) on a worker thread (koffi's asynchronous
// call, libbpf.ts loadObjectOnWorker); libbpf's print callback, called on that
// worker, is run by koffi on the main thread while the worker waits.
//
// Shown here as behaviour: the verifier's log of a program it rejects arrives
// through the callback from the worker, while the main thread makes its own
// libbpf calls (nothing on it waits for the worker: no deadlock); and while a
// swap's load is in flight, timers fire and an apply that fits the maps in
// force drops its source in the kernel before the load resolves, then the
// swap carries it into the new generation. The apply that made the swap due
// resolves once its ops are written, before the load: settled() waits for it.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { loadObject, loadObjectAsync } from '../../node-agent/src/datapath/bpf-object.js';
import { DatapathError, OpBatch, type TableIndex } from '../../node-agent/src/datapath/datapath.js';
import { type LibbpfLogLevel, XDP_DROP, XDP_PASS, setLibbpfLogSink } from '../../node-agent/src/datapath/libbpf.js';
import { ipFrame } from '../support/frames.js';
import { withDatapath } from '../support/pin-dirs.js';
import { compileRejectedObject } from '../support/rejected-object.js';

const IN4: TableIndex = 0;

test('a program the verifier rejects, loaded on a worker thread: its log arrives through the print callback while the main thread goes on making libbpf calls of its own', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fw-async-load-'));
  const lines: { level: LibbpfLogLevel; line: string }[] = [];
  setLibbpfLogSink((level, line) => lines.push({ level, line }));
  try {
    const rejected = compileRejectedObject(dir);
    let settled = false;
    const pending = loadObjectAsync(rejected).then(
      () => null,
      (e: unknown) => e,
    );
    void pending.finally(() => {
      settled = true;
    });
    // The main thread goes on loading objects of its own, synchronously, and lets the loop run between them
    // (the worker's callbacks run there): nothing here waits for the worker.
    let ownLoads = 0;
    do {
      await new Promise((r) => setImmediate(r));
      const bare = loadObject(resolve(import.meta.dirname, '../../bpf/bench/obj/bare.bpf.o'));
      assert.ok(bare.progFd('bare_pass') >= 0);
      bare.close();
      ownLoads++;
    } while (!settled && ownLoads < 1000);
    const err = await pending;
    assert.ok(ownLoads < 1000, 'the load on the worker settled');
    assert.ok(err instanceof DatapathError, `rejected with ${String(err)}`);
    assert.equal(err.code, 'EACCES');
    assert.match(err.message, /verifier rejected the program: .*invalid bpf_context access/s);
    const log = lines.filter((l) => l.level === 'warn').map((l) => l.line);
    assert.ok(
      log.some((l) => /BEGIN PROG LOAD LOG/.test(l) && /invalid bpf_context access off=4096/.test(l)),
      `the verifier's log came through the callback: ${JSON.stringify(log)}`,
    );
    assert.ok(log.some((l) => /fw_test_rejected.*failed to load/.test(l)));
  } finally {
    setLibbpfLogSink(null);
    rmSync(dir, { recursive: true, force: true });
  }
});

/** /32 entry i: 10.<i>.7.9, a /16 (a /24 index block) of its own; slot 1 + i. */
const source = (i: number) => `10.${i}.7.9`;
function entries(first: number, n: number): OpBatch {
  const b = new OpBatch(n);
  for (let i = first; i < first + n; i++) b.entryUpsert(IN4, new Uint8Array(source(i).split('.').map(Number)), 0, 32, 0, 1 + i);
  return b;
}

test("a swap's load in flight: timers fire, and an apply that fits the maps in force drops its source before the load resolves; the swap carries it", async () => {
  await withDatapath('async-swap', { capacity: { prefixesPerTable: 4096, counterSlots: 1024 } }, async (dp) => {
    const g0 = dp.generation();
    const blocks = g0.sizes.blocks[IN4]!;
    // A fills the /24 index past 3/4 (its apply then swaps in larger maps ahead); B still fits the maps in force.
    const nA = Math.floor(blocks * 0.75) + 1;
    assert.ok(nA + 1 <= blocks, `${blocks} blocks`);
    const events: string[] = [];
    let ticksDuringLoad = 0;
    const tick = setInterval(() => {
      if (dp.swapping) ticksDuringLoad++;
    }, 1);
    try {
      const a = dp.applyBatch(entries(0, nA)).then(() => {
        events.push('A resolved');
        // A resolved once written: the swap it made due goes on in the background.
        assert.ok(dp.swapping, 'the swap A made due is in flight when A resolves');
        assert.equal(dp.generation().n, g0.n);
      });
      const b = dp.applyBatch(entries(nA, 1)).then(() => {
        events.push('B resolved');
        // Still inside the load: the generation in force is the old one, and it drops B's source.
        assert.ok(dp.swapping, 'the swap A made due is in flight');
        assert.equal(dp.generation().n, g0.n);
        assert.equal(dp.testRun('xdp', ipFrame(source(nA), '192.0.2.1')).retval, XDP_DROP, "B's source drops before the load resolves");
        assert.equal(dp.testRun('xdp', ipFrame(source(nA + 1), '192.0.2.1')).retval, XDP_PASS);
      });
      await Promise.all([a, b]);
      await dp.settled();
      events.push('settled');
    } finally {
      clearInterval(tick);
    }
    assert.deepEqual(events, ['A resolved', 'B resolved', 'settled']);
    assert.ok(ticksDuringLoad > 0, 'a timer fired while the load was in flight');
    const g1 = dp.generation();
    assert.equal(g1.n, g0.n + 1, 'the swap A made due went in');
    assert.ok(g1.sizes.blocks[IN4]! > blocks, `the /24 index grew: ${blocks} -> ${g1.sizes.blocks[IN4]}`);
    assert.equal(dp.swapping, false);
    // The new generation was filled after the load: it holds B's entry, applied during it, as well as A's.
    for (let i = 0; i <= nA; i++) assert.equal(dp.testRun('xdp', ipFrame(source(i), '192.0.2.1')).retval, XDP_DROP, source(i));
    assert.equal(dp.lookupEntry('ingress', { family: 4, bytes: new Uint8Array([10, nA, 7, 9]), len: 32 })?.slot, 1 + nA);
  });
});
