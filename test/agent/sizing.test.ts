// sizing.ts, pure (issue 18): a part that grows at all grows to at least the
// grown floor; after an apply that leaves a part more than 3/4 full it grows
// ahead to three times what it holds; a shrink never lands between the least
// size and the floor (growth would jump over it again: no swap back and forth).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type GenLimits, type GenSizes, firstSizes, grow, growAhead, shrink } from '../../node-agent/src/datapath/sizing.js';

const LIMITS: GenLimits = { prefixesPerTable: 1 << 20, counterSlots: 1 << 20 };
const least = firstSizes(LIMITS, 2, false); // prefixes 1024 each, blocks 16 (IPv4 tables), slots 1024
const use = (p: number, b: number, s: number) => ({ prefixes: [p, 0, 0, 0], blocks: [b, 0, 0, 0], slots: s });

test('least sizes: 1024 prefixes, 16 blocks, 1024 slots', () => {
  assert.deepEqual([least.prefixes[0], least.blocks[0], least.slots], [1024, 16, 1024]);
});

test('grow ahead: nothing at 3/4 or less; past it, to the floor from the least, then three times what it holds; parts past half join the swap', () => {
  assert.equal(growAhead(least, use(768, 12, 768), LIMITS), least, 'at 3/4: nothing');
  const g = growAhead(least, use(769, 13, 769), LIMITS);
  assert.deepEqual([g.prefixes[0], g.blocks[0], g.slots], [8192, 512, 8192], 'past 3/4 of the least: the grown floors');
  assert.deepEqual(g.prefixes.slice(1), least.prefixes.slice(1), 'the other tables stay');
  const h = growAhead(g, use(7000, 400, 100), LIMITS);
  assert.deepEqual([h.prefixes[0], h.blocks[0], h.slots], [21504, 1200, 8192], 'three times what it holds, rounded up');
  const both = growAhead(least, use(600, 4, 769), LIMITS);
  assert.deepEqual(
    [both.prefixes[0], both.blocks[0], both.slots],
    [8192, 16, 8192],
    'the counters past 3/4: the hash, past half, grows in the same swap; the pool (a quarter) stays',
  );
  const max = growAhead({ ...g, prefixes: [1 << 20, 1024, 1024, 1024] }, use(1 << 20, 0, 0), LIMITS);
  assert.equal(max.prefixes[0], 1 << 20, 'never past the maximum');
});

test('grow before an apply that needs room: at least the floors', () => {
  const g = grow(least, use(1100, 17, 1100), LIMITS);
  assert.deepEqual([g.prefixes[0], g.blocks[0], g.slots], [8192, 512, 8192]);
  const big = grow(least, use(10_000, 1000, 10_000), LIMITS);
  assert.deepEqual(
    [big.prefixes[0], big.blocks[0], big.slots],
    [20480, 1504, 20480],
    'twice (1.5x for blocks) what it needs, above the floors',
  );
});

test('shrink: never between the least size and the floor; back to the least at a quarter of it', () => {
  const g: GenSizes = { ...least, prefixes: [8192, 1024, 1024, 1024], blocks: [512, 0, 16, 0], slots: 8192 };
  assert.equal(shrink(g, use(800, 100, 800), LIMITS), g, 'a quarter of the floor or less but more than a quarter of the least: stays');
  const s = shrink(g, use(200, 4, 200), LIMITS);
  assert.deepEqual([s.prefixes[0], s.blocks[0], s.slots], [1024, 16, 1024], 'a quarter of the least or less: the least');
  const large: GenSizes = { ...least, prefixes: [65536, 1024, 1024, 1024], blocks: [4096, 0, 16, 0], slots: 65536 };
  const t = shrink(large, use(5000, 1000, 5000), LIMITS);
  assert.deepEqual([t.prefixes[0], t.blocks[0]], [10240, 2000], 'above the floor: twice what it holds');
  assert.equal(t.slots, 8192, '1.25x of 5000 slots is below the floor: the floor');
});
