// The counter slot pool, as a table of scenarios: each row runs a sequence
// of steps on a fresh pool and compares the pool's state after it (the next
// slots a plan would get, which need a reset, owners, retired slots, counts).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SlotPool } from '../../node-agent/src/reconcile/slot-pool.js';

type Step =
  | readonly ['load', owners: number[], nonZero: number[]]
  | readonly ['take', slots: number[], owners: number[]]
  | readonly ['retire', slot: number, ruleId: bigint]
  | readonly ['release', slot: number]
  | readonly ['reclaim', n: number, got: number]
  | readonly ['lock']
  | readonly ['unlock'];

interface Expected {
  /** peek(0 .. available-1). */
  readonly next: number[];
  readonly needsReset: number[];
  readonly watermark: number;
  readonly inUse: number;
  readonly retired: [number, bigint][];
  /** owner[0 .. capacity). */
  readonly owners: number[];
}

const rows: { name: string; capacity: number; steps: Step[]; expect: Expected }[] = [
  {
    name: 'a fresh pool hands out slots from 0 up, none needs a reset',
    capacity: 4,
    steps: [],
    expect: { next: [0, 1, 2, 3], needsReset: [], watermark: 0, inUse: 0, retired: [], owners: [-1, -1, -1, -1] },
  },
  {
    name: 'taken slots belong to their rules and need a reset before any later reuse',
    capacity: 4,
    steps: [['take', [0, 1], [10, 11]]],
    expect: { next: [2, 3], needsReset: [0, 1], watermark: 2, inUse: 2, retired: [], owners: [10, 11, -1, -1] },
  },
  {
    name: 'a retired slot is neither owned nor free until released',
    capacity: 4,
    steps: [
      ['take', [0, 1, 2], [10, 11, 12]],
      ['retire', 1, 7n],
    ],
    expect: { next: [3], needsReset: [0, 1, 2], watermark: 3, inUse: 2, retired: [[1, 7n]], owners: [10, -1, 12, -1] },
  },
  {
    name: 'released slots are handed out first, most recent first, then the watermark',
    capacity: 4,
    steps: [
      ['take', [0, 1, 2], [10, 11, 12]],
      ['retire', 0, 5n],
      ['retire', 2, 6n],
      ['release', 0],
      ['release', 2],
    ],
    expect: { next: [2, 0, 3], needsReset: [0, 1, 2], watermark: 3, inUse: 1, retired: [], owners: [-1, 11, -1, -1] },
  },
  {
    name: 'a released slot taken again: the free list shrinks, the watermark stays',
    capacity: 4,
    steps: [
      ['take', [0, 1], [10, 11]],
      ['retire', 1, 5n],
      ['release', 1],
      ['take', [1, 2], [20, 21]],
    ],
    expect: { next: [3], needsReset: [0, 1, 2], watermark: 3, inUse: 3, retired: [], owners: [10, 20, 21, -1] },
  },
  {
    name: 'releases wait while a plan is applied (locked), so its slots stay valid',
    capacity: 4,
    steps: [['take', [0, 1], [10, 11]], ['retire', 0, 5n], ['lock'], ['release', 0]],
    // No longer retired, not yet free: counted in use until unlock.
    expect: { next: [2, 3], needsReset: [0, 1], watermark: 2, inUse: 2, retired: [], owners: [-1, 11, -1, -1] },
  },
  {
    name: '...and become free at unlock',
    capacity: 4,
    steps: [['take', [0, 1], [10, 11]], ['retire', 0, 5n], ['lock'], ['release', 0], ['unlock']],
    expect: { next: [0, 2, 3], needsReset: [0, 1], watermark: 2, inUse: 1, retired: [], owners: [-1, 11, -1, -1] },
  },
  {
    name: 'releasing a slot that is not retired does nothing',
    capacity: 3,
    steps: [
      ['take', [0], [10]],
      ['release', 0],
      ['release', 2],
    ],
    expect: { next: [1, 2], needsReset: [0], watermark: 1, inUse: 1, retired: [], owners: [10, -1, -1] },
  },
  {
    name: 'reclaim takes back the oldest retired slots (their last counts are lost)',
    capacity: 4,
    steps: [
      ['take', [0, 1, 2, 3], [10, 11, 12, 13]],
      ['retire', 2, 7n],
      ['retire', 0, 8n],
      ['retire', 3, 9n],
      ['reclaim', 2, 2],
    ],
    expect: { next: [0, 2], needsReset: [0, 1, 2, 3], watermark: 4, inUse: 1, retired: [[3, 9n]], owners: [-1, 11, -1, -1] },
  },
  {
    name: 'reclaim of more than are retired takes what there is',
    capacity: 2,
    steps: [
      ['take', [0, 1], [10, 11]],
      ['retire', 1, 7n],
      ['reclaim', 5, 1],
    ],
    expect: { next: [1], needsReset: [0, 1], watermark: 2, inUse: 1, retired: [], owners: [10, -1] },
  },
  {
    name: 'load: journaled owners, free gaps below the watermark (lowest first), unused slots with counts need a reset',
    capacity: 6,
    steps: [['load', [-1, 5, -1, 7, -1, -1], [2, 4]]],
    expect: { next: [0, 2, 4, 5], needsReset: [1, 2, 3, 4], watermark: 4, inUse: 2, retired: [], owners: [-1, 5, -1, 7, -1, -1] },
  },
  {
    name: 'load of an empty journal: every slot free from 0',
    capacity: 3,
    steps: [['load', [-1, -1, -1], []]],
    expect: { next: [0, 1, 2], needsReset: [], watermark: 0, inUse: 0, retired: [], owners: [-1, -1, -1] },
  },
];

function run(pool: SlotPool, step: Step): void {
  switch (step[0]) {
    case 'load': {
      const nonZero = new Set(step[2]);
      pool.load(Int32Array.from(step[1]), (s) => nonZero.has(s));
      return;
    }
    case 'take':
      pool.take(Int32Array.from(step[1]), Int32Array.from(step[2]));
      return;
    case 'retire':
      pool.retire(step[1], step[2]);
      return;
    case 'release':
      pool.release(step[1]);
      return;
    case 'reclaim':
      assert.equal(pool.reclaim(step[1]), step[2], `reclaim(${step[1]})`);
      return;
    case 'lock':
      pool.lock();
      return;
    case 'unlock':
      pool.unlock();
      return;
  }
}

for (const row of rows) {
  test(`slot pool: ${row.name}`, () => {
    const pool = new SlotPool(row.capacity);
    for (const step of row.steps) run(pool, step);
    const next: number[] = [];
    for (let k = 0; k < pool.available; k++) next.push(pool.peek(k));
    assert.deepEqual(next, row.expect.next, 'next slots');
    const reset: number[] = [];
    for (let s = 0; s < row.capacity; s++) if (pool.needsReset(s)) reset.push(s);
    assert.deepEqual(reset, row.expect.needsReset, 'slots that need a reset');
    assert.equal(pool.watermark, row.expect.watermark, 'watermark');
    assert.equal(pool.inUse, row.expect.inUse, 'in use');
    assert.deepEqual([...pool.retired], row.expect.retired, 'retired');
    assert.deepEqual([...pool.owner], row.expect.owners, 'owners');
  });
}

test('slot pool: taking a slot other than the next one is refused (the plan and the pool are out of step)', () => {
  const pool = new SlotPool(4);
  assert.throws(() => pool.take(Int32Array.of(1), Int32Array.of(10)), /slot pool out of step: expected to take 0, got 1/);
  pool.take(Int32Array.of(0), Int32Array.of(10));
  assert.throws(() => pool.take(Int32Array.of(2), Int32Array.of(12)), /expected to take 1, got 2/);
  assert.equal(pool.watermark, 1, 'nothing taken by the refused call');
});
