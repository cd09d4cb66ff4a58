// A generation swap that fails leaves the maps in force, and says so: the
// datapath counts failed swaps by kind and keeps the last one's reason
// (memory(): what the agent exports as fleetwall_agent_map_resize_failures and
// in /healthz). Provoked for real:
//
//   - grow: the datapath is opened from a copy of the objects, then the XDP
//     object is replaced by one the verifier rejects: the swap a grow ahead
//     starts fails at its load (EACCES from the kernel), so does the one an
//     apply that needs larger maps starts (that apply is refused, nothing
//     written); with the real object back, the next apply grows the maps;
//   - shrink: an apply that fits the maps in force lands while a shrink's load
//     is in flight and leaves more than the smaller maps hold: the shrink is
//     given up after its load ("the maps filled up during the load").
//
// Each time the generation in force stays, and its programs still drop the
// listed sources.

import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import type { BpfDatapath } from '../../node-agent/src/datapath/bpf-datapath.js';
import { DatapathError, OpBatch, type TableIndex } from '../../node-agent/src/datapath/datapath.js';
import { listGenerations } from '../../node-agent/src/datapath/generation.js';
import { XDP_DROP, XDP_PASS } from '../../node-agent/src/datapath/libbpf.js';
import { ipFrame } from '../support/frames.js';
import { withDatapath } from '../support/pin-dirs.js';
import { compileRejectedObject } from '../support/rejected-object.js';

const IN4: TableIndex = 0;
const OBJ_DIR = resolve(import.meta.dirname, '../../bpf/obj');
const XDP_OBJ = 'xdp_ingress.bpf.o';

/** /32 entry i: 10.<i>.7.9, a /16 (a /24 index block) of its own; slot 1 + i. */
const source = (i: number) => `10.${i}.7.9`;
const bytesOf = (i: number) => new Uint8Array(source(i).split('.').map(Number));
function entries(first: number, n: number): OpBatch {
  const b = new OpBatch(n);
  for (let i = first; i < first + n; i++) b.entryUpsert(IN4, bytesOf(i), 0, 32, 0, 1 + i);
  return b;
}
function deletes(first: number, n: number): OpBatch {
  const b = new OpBatch(n);
  for (let i = first; i < first + n; i++) b.entryDelete(IN4, bytesOf(i), 0, 32);
  return b;
}
const verdict = (dp: BpfDatapath, i: number) => dp.testRun('xdp', ipFrame(source(i), '192.0.2.1')).retval;

test('a grow whose load the verifier refuses: counted (grow), its reason kept, the generation in force stays and drops the listed sources; the next apply grows once the object loads again', async () => {
  const objDir = mkdtempSync(join(tmpdir(), 'fw-swap-fail-'));
  try {
    copyFileSync(join(OBJ_DIR, XDP_OBJ), join(objDir, XDP_OBJ));
    copyFileSync(join(OBJ_DIR, 'tc_egress.bpf.o'), join(objDir, 'tc_egress.bpf.o'));
    copyFileSync(join(OBJ_DIR, 'fw_clock.bpf.o'), join(objDir, 'fw_clock.bpf.o')); // the policies' clock (kernel-clock.ts)
    const rejected = compileRejectedObject(objDir);
    await withDatapath('swap-fail-grow', { objDir, capacity: { prefixesPerTable: 4096, counterSlots: 1024 } }, async (dp, pinDir) => {
      const g0 = dp.generation();
      assert.deepEqual(dp.memory().swapFailures, { grow: 0, shrink: 0 });
      assert.equal(dp.memory().lastSwapFailure, '');
      assert.equal(dp.memory().lastSwapFailureAt, 0);
      const before = Date.now();
      // The open loaded the real objects; from now on a swap's load reads one the kernel refuses.
      copyFileSync(rejected, join(objDir, XDP_OBJ));
      const blocks = g0.sizes.blocks[IN4]!;
      // A fills the /24 index past 3/4 (a grow ahead is due once it is written) and still fits.
      const nA = Math.floor(blocks * 0.75) + 1;
      assert.ok(nA <= blocks, `${blocks} blocks`);
      await dp.applyBatch(entries(0, nA));
      await dp.settled();
      let m = dp.memory();
      assert.deepEqual(m.swapFailures, { grow: 1, shrink: 0 }, 'the grow ahead failed and was counted');
      assert.match(m.lastSwapFailure, /^grow: .*verifier rejected the program/s);
      assert.ok(m.lastSwapFailureAt >= before && m.lastSwapFailureAt <= Date.now(), 'when it failed');
      assert.equal(m.swaps, 0);
      assert.deepEqual(dp.generation(), g0, 'the generation in force stayed');
      assert.deepEqual(listGenerations(pinDir), [g0.n], "the failed swap's folder is gone");
      for (let i = 0; i < nA; i++) assert.equal(verdict(dp, i), XDP_DROP, `${source(i)} still dropped`);
      assert.equal(verdict(dp, nA), XDP_PASS);

      // An apply that needs more /24 blocks than the maps hold swaps first: refused with the load's error, nothing written.
      const more = blocks - nA + 1;
      await assert.rejects(dp.applyBatch(entries(nA, more)), (e: unknown) => e instanceof DatapathError && e.code === 'EACCES');
      await dp.settled();
      m = dp.memory();
      assert.deepEqual(m.swapFailures, { grow: 2, shrink: 0 });
      assert.deepEqual(dp.generation(), g0);
      assert.equal(verdict(dp, nA), XDP_PASS, 'the refused apply wrote nothing');
      assert.equal(verdict(dp, 0), XDP_DROP);

      // The object loads again: the same apply grows the maps (the grow it needs), the failures stay counted.
      copyFileSync(join(OBJ_DIR, XDP_OBJ), join(objDir, XDP_OBJ));
      await dp.applyBatch(entries(nA, more));
      await dp.settled();
      m = dp.memory();
      assert.ok(m.swaps >= 1, `${m.swaps} swaps`);
      assert.deepEqual(m.swapFailures, { grow: 2, shrink: 0 });
      assert.equal(m.lastSwapFailure, '', 'a swap went in since the last failure');
      assert.equal(m.lastSwapFailureAt, 0);
      const g1 = dp.generation();
      assert.ok(g1.n > g0.n && g1.sizes.blocks[IN4]! > blocks, `generation ${g1.n}, ${g1.sizes.blocks[IN4]} blocks`);
      for (let i = 0; i < nA + more; i++) assert.equal(verdict(dp, i), XDP_DROP, source(i));
    });
  } finally {
    rmSync(objDir, { recursive: true, force: true });
  }
});

test('a shrink given up after its load (an apply meanwhile filled more than the smaller maps hold): counted (shrink), the generation in force stays and drops every listed source', async () => {
  await withDatapath('swap-fail-shrink', { capacity: { prefixesPerTable: 4096, counterSlots: 1024 } }, async (dp, pinDir) => {
    const least = dp.generation().sizes.blocks[IN4]!;
    // Past 3/4 of the least /24 pool: it grows ahead (to at least GROWN_BLOCKS, 512).
    const nA = Math.floor(least * 0.75) + 1;
    await dp.applyBatch(entries(0, nA));
    await dp.settled();
    const g1 = dp.generation();
    const grown = g1.sizes.blocks[IN4]!;
    assert.ok(grown > least, `grown: ${least} -> ${grown} blocks`);
    // Deleting all but one leaves a quarter or less: a shrink (back to the least) is due once D is written...
    const d = dp.applyBatch(deletes(1, nA - 1)).then(() => {
      assert.ok(dp.swapping, 'the shrink D made due is in flight when D resolves');
    });
    // ...and B, called right after, fits the grown maps and is written during the shrink's load: more /16s than the least pool holds.
    const nB = least + 4;
    assert.ok(1 + nB <= grown * 0.75, `${nB} fit ${grown} blocks without a grow ahead`);
    const b = dp.applyBatch(entries(nA, nB)).then(() => {
      assert.ok(dp.swapping, "B was written during the shrink's load");
      assert.equal(dp.generation().n, g1.n);
    });
    await Promise.all([d, b]);
    await dp.settled();
    const m = dp.memory();
    assert.deepEqual(m.swapFailures, { grow: 0, shrink: 1 }, 'the shrink was given up and counted');
    assert.match(m.lastSwapFailure, /^shrink: .*the maps filled up during the load/);
    assert.deepEqual(dp.generation(), g1, 'the generation in force stayed');
    assert.deepEqual(listGenerations(pinDir), [g1.n]);
    assert.equal(verdict(dp, 0), XDP_DROP);
    for (let i = 1; i < nA; i++) assert.equal(verdict(dp, i), XDP_PASS, `${source(i)} deleted`);
    for (let i = nA; i < nA + nB; i++) assert.equal(verdict(dp, i), XDP_DROP, `${source(i)} dropped`);
  });
});
