// Issue 18, "agents stay responsive under attack": a flood of random sources
// makes the responder ban one source after another, each a /32 in a /16 of
// its own (a block of the /24 index each: the /24 words of one /16). The maps grow by swapping in a larger
// generation, which loads the programs again (the verifier: a second or more
// under load, the event loop blocked). Growing AHEAD (sizing.ts growAhead):
// after an apply that leaves a part more than 3/4 full, the swap comes after
// that apply - so the ban that fills the maps is in the kernel (dropping)
// before the swap starts, never waiting for it - and to three times what the
// part holds, so the next bans find room. Before, the ban that did not fit
// waited for the swap: the swap ran first.
//
// The property is an order, read in the swap's own hook: at the first step
// of every swap, the source of the batch being applied already drops.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { XDP_DROP } from '../../node-agent/src/datapath/libbpf.js';
import { OpBatch, type TableIndex } from '../../node-agent/src/datapath/datapath.js';
import { ipFrame } from '../support/frames.js';
import { withDatapath } from '../support/pin-dirs.js';

const IN4: TableIndex = 0;
const BANS = 400;

test('bans one per /16 past the least sizes: each swap that grows the maps starts after the ban that filled them drops', async () => {
  let current = '';
  const atSwap: { source: string; dropped: boolean; blocks: number }[] = [];
  let dp!: Parameters<Parameters<typeof withDatapath>[2]>[0];
  await withDatapath(
    'grow-ahead',
    {
      onSwapStep: (step) => {
        if (step !== 'built') return;
        const dropped = dp.testRun('xdp', ipFrame(current, '192.0.2.1')).retval === XDP_DROP;
        atSwap.push({ source: current, dropped, blocks: dp.generation().sizes.blocks[IN4]! });
      },
    },
    async (opened) => {
      dp = opened;
      const least = dp.generation().sizes.blocks[IN4]!;
      const b = new OpBatch(2);
      for (let i = 0; i < BANS; i++) {
        // (10 + i/256).(i % 256).(7i).9: a /16 of its own each (a /24 index block each).
        current = `${10 + (i >> 8)}.${i & 255}.${(i * 7) & 255}.9`;
        const bytes = new Uint8Array(current.split('.').map(Number));
        b.clear();
        b.journalUpsert(BigInt(1 + i), IN4, bytes, 0, 32, 0, i, 0);
        b.entryUpsert(IN4, bytes, 0, 32, 0, i);
        await dp.applyBatch(b);
        assert.equal(dp.testRun('xdp', ipFrame(current, '192.0.2.1')).retval, XDP_DROP, `${current} drops after its apply`);
        // Its apply resolved once written; a swap it made due goes on in the background. Let it land before the
        // next ban, so that `current` at a swap's first step is the ban that made it due.
        await dp.settled();
      }
      const grown = dp.generation().sizes.blocks[IN4]!;
      assert.ok(grown >= BANS && least < BANS, `the /24 index grew from ${least} to ${grown} blocks`);
      assert.ok(atSwap.length >= 2, `swaps: ${JSON.stringify(atSwap)}`);
      for (const s of atSwap)
        assert.ok(s.dropped, `the swap at ${s.blocks} blocks started before ${s.source}, whose apply needed it, dropped`);
      // From 16 blocks to the grown floor (512), then three times what it holds (1.5x before: 16, 32, 48, 80, 128, 192, 288, 432).
      assert.ok(atSwap.length <= 3, `${atSwap.length} swaps for ${BANS} bans`);
    },
  );
});
