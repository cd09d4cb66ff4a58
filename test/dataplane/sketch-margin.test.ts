// The count-min margin (node-agent/src/datapath/sketch-margin.ts), pure: a
// lone source gets none, the margin is the row's 1-in-64 tail whatever the
// shape of the traffic, only the window's cells count, a window that just
// began takes the previous one's, and the textbook rule is floor(e N / w).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MARGIN_TAIL, rowMargin } from '../../node-agent/src/datapath/sketch-margin.js';

const W = 32768;
const CUR = 1000;
const PREV = 999;

function row(fill: (j: number) => [number, number, number] | undefined): Uint32Array {
  const r = new Uint32Array(W * 4);
  for (let j = 0; j < W; j++) {
    const c = fill(j);
    if (!c) continue;
    r[4 * j] = c[0];
    r[4 * j + 1] = c[1];
    r[4 * j + 2] = c[2];
  }
  return r;
}

test('a lone source, or few, get no margin: the limit is exact', () => {
  assert.deepEqual(
    rowMargin(
      row(() => undefined),
      CUR,
      PREV,
      'quantile',
      true,
    ),
    { packets: 0, bytes: 0, marginPackets: 0, marginBytes: 0 },
  );
  const one = rowMargin(
    row((j) => (j === 7 ? [CUR, 19, 1900] : undefined)),
    CUR,
    PREV,
    'quantile',
    true,
  );
  assert.deepEqual(one, { packets: 19, bytes: 1900, marginPackets: 0, marginBytes: 0 });
  // As many busy cells as the tail allows: still none.
  const tail = W / MARGIN_TAIL;
  const few = rowMargin(
    row((j) => (j < tail ? [CUR, 50, 5000] : undefined)),
    CUR,
    PREV,
    'quantile',
    false,
  );
  assert.equal(few.marginPackets, 0);
  assert.equal(few.packets, 50 * tail);
});

test('the margin is the 1-in-64 tail of the row: never below it, at most a histogram bucket above', () => {
  const tail = W / MARGIN_TAIL;
  // tail + 1 cells at 100, the rest at 5: more than the tail hold 100.
  const m1 = rowMargin(
    row((j) => [CUR, j <= tail ? 100 : 5, 0]),
    CUR,
    PREV,
    'quantile',
    false,
  );
  assert.ok(m1.marginPackets >= 100 && m1.marginPackets <= 100, `${m1.marginPackets}`);
  // tail cells at 100: they are the tail; the rest hold 5.
  const m2 = rowMargin(
    row((j) => [CUR, j < tail ? 100 : 5, 0]),
    CUR,
    PREV,
    'quantile',
    false,
  );
  assert.ok(m2.marginPackets >= 5 && m2.marginPackets <= 5 + Math.ceil(101 / 256), `${m2.marginPackets}`);
  // A uniform flood: every cell ~31: the margin is near 31, far below e N / w (~84).
  const m3 = rowMargin(
    row((j) => [CUR, 28 + (j % 7), 0]),
    CUR,
    PREV,
    'quantile',
    false,
  );
  const cm = rowMargin(
    row((j) => [CUR, 28 + (j % 7), 0]),
    CUR,
    PREV,
    'count-min',
    false,
  );
  assert.ok(m3.marginPackets >= 34 && m3.marginPackets <= 35, `${m3.marginPackets}`);
  assert.equal(cm.marginPackets, Math.floor((Math.E * cm.packets) / W));
  assert.ok(cm.marginPackets > 80);
});

test("only the window's cells count; a window that just began takes the previous one's", () => {
  const stale = rowMargin(
    row(() => [CUR - 5, 1000, 0]),
    CUR,
    PREV,
    'quantile',
    false,
  );
  assert.deepEqual([stale.packets, stale.marginPackets], [0, 0], 'cells of an older window (or another policy version) are ignored');
  const begun = rowMargin(
    row((j) => (j % 2 ? [PREV, 40, 4000] : [CUR, 1, 100])),
    CUR,
    PREV,
    'quantile',
    true,
  );
  assert.equal(begun.packets, (W / 2) * 40, 'the previous window holds more');
  assert.ok(begun.marginPackets >= 40 && begun.marginBytes >= 4000, `${begun.marginPackets} ${begun.marginBytes}`);
});
