// The local expiry queue, as tables: entries come due in time order whatever
// the push order, an entry is expired only if the target still holds that
// rule with that expiry, the queue grows past its first arrays, and the
// earliest push is reported once (so the owner can bring its timer forward).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExpiryQueue, type ExpiryTarget } from '../../node-agent/src/expiry/expiry-queue.js';
import { rngUnit } from '../support/rng.js';

/** A target that records what it was asked to expire and holds (record -> id, expiry). */
class Target implements ExpiryTarget {
  readonly asked: string[] = [];
  constructor(readonly holds = new Map<number, { id: bigint; at: number }>()) {}
  expireRecord(r: number, id: bigint, at: number): boolean {
    this.asked.push(`${r}:${id}@${at}`);
    const h = this.holds.get(r);
    if (!h || h.id !== id || h.at !== at) return false;
    this.holds.delete(r);
    return true;
  }
}

const rows: {
  name: string;
  pushes: [r: number, id: bigint, at: number][];
  /** What the target still holds when expire() runs (default: every push). */
  holds?: [r: number, id: bigint, at: number][];
  now: number;
  removed: number;
  asked: string[];
  next: number;
  size: number;
}[] = [
  {
    name: 'nothing due: nothing asked',
    pushes: [[1, 11n, 500]],
    now: 499,
    removed: 0,
    asked: [],
    next: 500,
    size: 1,
  },
  {
    name: 'due at or before now, in time order whatever the push order',
    pushes: [
      [3, 13n, 300],
      [1, 11n, 100],
      [4, 14n, 400],
      [2, 12n, 200],
    ],
    now: 300,
    removed: 3,
    asked: ['1:11@100', '2:12@200', '3:13@300'],
    next: 400,
    size: 1,
  },
  {
    name: 'a record that changed since (other rule, other expiry, deleted) is skipped',
    pushes: [
      [1, 11n, 100],
      [2, 12n, 101],
      [3, 13n, 102],
      [4, 14n, 103],
    ],
    holds: [
      [1, 11n, 100],
      [2, 99n, 101],
      [3, 13n, 700],
    ],
    now: 103,
    removed: 1,
    asked: ['1:11@100', '2:12@101', '3:13@102', '4:14@103'],
    next: Infinity,
    size: 0,
  },
  {
    name: 'one record pushed twice (its expiry moved): the stale entry is skipped, the current one counts',
    pushes: [
      [5, 15n, 100],
      [5, 15n, 250],
    ],
    holds: [[5, 15n, 250]],
    now: 1000,
    removed: 1,
    asked: ['5:15@100', '5:15@250'],
    next: Infinity,
    size: 0,
  },
  {
    name: 'ids beyond 2^53 are kept exactly',
    pushes: [[7, 2n ** 64n - 1n, 10]],
    now: 10,
    removed: 1,
    asked: [`7:${2n ** 64n - 1n}@10`],
    next: Infinity,
    size: 0,
  },
];

for (const row of rows) {
  test(`expiry queue: ${row.name}`, () => {
    const q = new ExpiryQueue();
    for (const [r, id, at] of row.pushes) q.push(r, id, at);
    const t = new Target(new Map((row.holds ?? row.pushes).map(([r, id, at]) => [r, { id, at }])));
    assert.equal(q.expire(row.now, t), row.removed, 'removed');
    assert.deepEqual(t.asked, row.asked, 'asked, in order');
    assert.equal(q.next, row.next, 'next');
    assert.equal(q.size, row.size, 'size');
  });
}

test('expiry queue: thousands of entries come out in time order (the heap grows past its first arrays)', () => {
  const rand = rngUnit(5);
  const q = new ExpiryQueue();
  const t = new Target();
  const times: number[] = [];
  for (let r = 0; r < 3000; r++) {
    const at = 1 + Math.floor(rand() * 100_000);
    times.push(at);
    q.push(r, BigInt(r) + 1000n, at);
    t.holds.set(r, { id: BigInt(r) + 1000n, at });
  }
  assert.equal(q.size, 3000);
  assert.equal(q.next, Math.min(...times));
  // In steps: each step expires exactly what is due.
  let done = 0;
  for (const now of [10_000, 50_000, 50_000, 99_999, 100_000]) {
    const want = times.filter((at) => at <= now).length - done;
    assert.equal(q.expire(now, t), want, `due by ${now}`);
    done += want;
  }
  assert.equal(done, 3000);
  const got = t.asked.map((a) => Number(a.split('@')[1]));
  assert.deepEqual(
    got,
    [...times].sort((a, b) => a - b),
  );
  assert.equal(q.size, 0);
  assert.equal(q.next, Infinity);
});

test('expiry queue: the earliest push is reported once, then Infinity until the next push', () => {
  const q = new ExpiryQueue();
  assert.equal(q.takeEarliestPush(), Infinity);
  q.push(1, 1n, 500);
  q.push(2, 2n, 300);
  q.push(3, 3n, 900);
  assert.equal(q.takeEarliestPush(), 300);
  assert.equal(q.takeEarliestPush(), Infinity, 'reported once');
  q.push(4, 4n, 700);
  assert.equal(q.takeEarliestPush(), 700, 'a later push is reported too: the owner compares with its timer');
  assert.equal(q.next, 300, 'the queue itself is unchanged by it');
});
