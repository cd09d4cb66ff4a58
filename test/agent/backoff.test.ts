// Reconnect backoff, as a table: with the random source pinned, each row's
// delays are exactly floor(random * min(cap, base * 2^attempt)) — exponential,
// capped, full jitter — and reset() starts again from the base.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff } from '../../node-agent/src/sync/backoff.js';

/** A random source that returns `values` in turn. */
const seq = (...values: number[]): (() => number) => {
  let i = 0;
  return () => values[i++ % values.length]!;
};

const rows: { name: string; base: number; cap: number; random: () => number; delays: number[] }[] = [
  { name: 'top of the range doubles up to the cap', base: 100, cap: 1000, random: () => 0.999, delays: [99, 199, 399, 799, 999, 999] },
  {
    name: 'half the range (full jitter scales the ceiling)',
    base: 250,
    cap: 10_000,
    random: () => 0.5,
    delays: [125, 250, 500, 1000, 2000, 4000, 5000, 5000],
  },
  { name: 'random 0 waits 0 (full jitter starts at zero)', base: 250, cap: 10_000, random: () => 0, delays: [0, 0, 0, 0] },
  { name: 'each call draws afresh', base: 1000, cap: 8000, random: seq(0.1, 0.9, 0.25, 0.75), delays: [100, 1800, 1000, 6000, 800, 7200] },
  { name: 'a base above the cap is capped at once', base: 5000, cap: 3000, random: () => 0.5, delays: [1500, 1500, 1500] },
];

for (const row of rows) {
  test(`backoff: ${row.name}`, () => {
    const b = new Backoff(row.base, row.cap, row.random);
    const got: number[] = [];
    for (let i = 0; i < row.delays.length; i++) got.push(b.next());
    assert.deepEqual(got, row.delays);
    assert.equal(b.attempts, row.delays.length);
  });
}

test('backoff: reset() after a healthy session starts from the base again', () => {
  const b = new Backoff(100, 10_000, () => 0.5);
  assert.deepEqual([b.next(), b.next(), b.next()], [50, 100, 200]);
  b.reset();
  assert.equal(b.attempts, 0);
  assert.deepEqual([b.next(), b.next()], [50, 100]);
});

test('backoff: after many attempts the delay stays finite and at most the cap', () => {
  const b = new Backoff(1, 2 ** 40, () => 0.5);
  let last = 0;
  for (let i = 0; i < 200; i++) last = b.next();
  // The exponent stops at 2^30: no Infinity, no NaN, however long the outage.
  assert.equal(last, 2 ** 29);
  const capped = new Backoff(250, 10_000, () => 0.999999);
  for (let i = 0; i < 100; i++) assert.ok(capped.next() < 10_000);
});
