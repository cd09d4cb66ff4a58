// The typed-array hash index against a Map, through growth and deletions.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NumIndex } from '../../node-agent/src/reconcile/num-index.js';

test('NumIndex behaves like a Map under random inserts, updates and deletes', () => {
  let seed = 7;
  const rand = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  for (const start of [0, 5, 1000]) {
    const ix = new NumIndex(start);
    const ref = new Map<number, number>();
    for (let step = 0; step < 60_000; step++) {
      // Keys cluster (sequential ids) and spread (39-bit prefix keys).
      const key = rand() < 0.5 ? Math.floor(rand() * 3000) : Math.floor(rand() * 2 ** 39);
      const r = rand();
      if (r < 0.55) {
        const v = Math.floor(rand() * 1e6);
        ix.set(key, v);
        ref.set(key, v);
      } else if (r < 0.85) {
        assert.equal(ix.delete(key), ref.get(key) ?? -1);
        ref.delete(key);
      } else {
        assert.equal(ix.get(key), ref.get(key) ?? -1);
      }
    }
    assert.equal(ix.size, ref.size);
    for (const [k, v] of ref) assert.equal(ix.get(k), v);
  }
});
