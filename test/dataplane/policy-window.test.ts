// A policy's window in jiffies (ABI 14, node-agent/src/datapath/policy-window.ts
// and kernel-clock.ts' hzOf), pure: the reciprocal the kernel multiplies by
// lies in [2^23, 2^24]; a window of a whole number of jiffies (100 ms at HZ
// 100/250/300/1000) lasts that many (all but one in about 2^24 / w: the
// reciprocal's rounding); one that is not (10 ms at HZ 250 is 2.5 jiffies,
// 1001 ms at HZ 300 is 300.3, 1 ms at HZ 300 is 0.3) lasts the floor or the
// ceiling of it, and n windows last n times it to within a jiffy; the product fits the kernel's u64 for 34 years of jiffies; HZ is
// the nearest of the kernel's choices to the coarse clock's ns per jiffy.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hzOf } from '../../node-agent/src/datapath/kernel-clock.js';
import { windowEpoch, windowRecip } from '../../node-agent/src/datapath/policy-window.js';

const MS = 1_000_000n;
/** jiffies64 at boot on a 64-bit kernel: INITIAL_JIFFIES, (u32)(-300 * HZ). */
const bootJiffies = (hz: number) => (1n << 32n) - BigInt(300 * hz);

/** The lengths (in jiffies) of the whole windows from jiffies `from` over `span` jiffies. */
function windowLengths(
  windowNs: bigint,
  hz: number,
  from: bigint,
  span: number,
): { lengths: Map<number, number>; n: number; jiffies: number } {
  const r = windowRecip(windowNs, hz);
  const lengths = new Map<number, number>();
  let prev = windowEpoch(from, r);
  let start: bigint | undefined;
  let n = 0;
  let first: bigint | undefined;
  let last = from;
  for (let j = from + 1n; j < from + BigInt(span); j++) {
    const e = windowEpoch(j, r);
    if (e === prev) continue;
    // A jiffy shorter than the window moves it by more than one: those windows have no jiffy of their own.
    if (start !== undefined && e === prev + 1n) {
      const len = Number(j - start);
      lengths.set(len, (lengths.get(len) ?? 0) + 1);
      n++;
      last = j;
    }
    first ??= j;
    start = j;
    prev = e;
  }
  return { lengths, n, jiffies: Number(last - (first ?? from)) };
}

test('a window of a whole number of jiffies lasts exactly that many, at every HZ', () => {
  for (const hz of [100, 250, 300, 1000]) {
    const w = (100 * hz) / 1000;
    const r = windowRecip(100n * MS, hz);
    assert.ok(r.mul >= 2 ** 23 && r.mul <= 2 ** 24, `HZ ${hz}: mul ${r.mul}`);
    // Just after boot and a year later.
    for (const from of [bootJiffies(hz), bootJiffies(hz) + BigInt(365 * 86400 * hz)]) {
      const { lengths, n } = windowLengths(100n * MS, hz, from, 500 * w);
      assert.deepEqual([...lengths.keys()], [w], `HZ ${hz} from ${from}: every window ${w} jiffies`);
      assert.ok(n >= 498, `HZ ${hz}: ${n} windows`);
    }
  }
});

test('a window that is not a whole number of jiffies lasts its floor or its ceiling, its length on average', () => {
  const cases: [bigint, number, number][] = [
    [10n * MS, 250, 2.5],
    [1001n * MS, 300, 300.3],
    [110n * MS, 300, 33],
    [7n * MS, 1000, 7],
    [1234n * MS, 250, 308.5],
    [100_000n * MS, 100, 10_000],
  ];
  for (const [ns, hz, w] of cases) {
    const span = Math.min(Math.round(w * 4000), 1_000_000);
    const { lengths, n, jiffies } = windowLengths(ns, hz, bootJiffies(hz) + 12345n, span);
    assert.ok(n >= 50, `${n} windows`);
    // w' = 2^shift / mul, within 2^-24 of w: a whole w may be w' a hair under (or over) it, so one window in
    // about 2^24 / w may be a jiffy shorter (longer), as on the coarse clock, whose ticks are not whole ns.
    const r = windowRecip(ns, hz);
    const wp = 2 ** r.shift / r.mul;
    assert.ok(Math.abs(wp / w - 1) <= 2 ** -24, `${ns / MS} ms at HZ ${hz}: w' ${wp}`);
    const allowed = new Set([Math.floor(wp), Math.ceil(wp)]);
    for (const len of lengths.keys()) assert.ok(allowed.has(len), `${ns / MS} ms at HZ ${hz}: a window of ${len} jiffies`);
    if (Number.isInteger(w)) {
      const off = n - (lengths.get(w) ?? 0);
      assert.ok(off <= (n * w) / 2 ** 23 + 1, `${ns / MS} ms at HZ ${hz}: ${off} windows of ${n} not ${w} jiffies`);
    }
    assert.ok(Math.abs(jiffies / n - w) <= 1 / n + w * 2 ** -23, `${ns / MS} ms at HZ ${hz}: ${n} windows in ${jiffies} jiffies`);
  }
  // A window shorter than a jiffy (1 ms at HZ 300: 0.3): each jiffy is in its own window, none is shared.
  const r = windowRecip(1n * MS, 300);
  const j0 = bootJiffies(300);
  let moved = 0n;
  for (let j = j0; j < j0 + 3000n; j++) moved += windowEpoch(j + 1n, r) - windowEpoch(j, r);
  assert.ok(moved >= 9999n && moved <= 10001n, `3000 jiffies of 1 ms windows at HZ 300: ${moved} windows`);
  for (let j = j0; j < j0 + 3000n; j++) assert.ok(windowEpoch(j + 1n, r) > windowEpoch(j, r));
});

test("the kernel's product fits in a u64 for 34 years of jiffies at HZ 1000; windows out of range are refused", () => {
  const jMax = 1n << 40n;
  assert.ok(bootJiffies(1000) + 34n * 365n * 86400n * 1000n < jMax);
  for (const [ns, hz] of [
    [1n * MS, 100],
    [100n * MS, 1000],
    [3_600_000n * MS, 1000],
    [3_600_000n * MS, 100],
  ] as const) {
    const r = windowRecip(ns, hz);
    assert.ok(BigInt(r.mul) * jMax < 1n << 64n, `${ns} ns at HZ ${hz}`);
    assert.ok(r.shift >= 16 && r.shift < 64);
    // The u64 product's epoch is the exact quotient's, to the reciprocal's precision.
    const exact = (jMax * 1_000_000_000n) / (ns * BigInt(hz));
    const e = windowEpoch(jMax, r);
    assert.ok(e - exact <= (exact >> 22n) + 1n && exact - e <= (exact >> 22n) + 1n, `${e} against ${exact}`);
  }
  assert.throws(() => windowRecip(0n, 250), RangeError);
  assert.throws(() => windowRecip(100n * MS, 0), RangeError);
  assert.throws(() => windowRecip(1000n, 100), RangeError, 'a window of 10^-4 jiffy');
});

test("HZ is the nearest of the kernel's choices to the coarse clock's ticks, within 1%, else read again", () => {
  assert.equal(hzOf(4n, 16_000_000n), 250);
  assert.equal(hzOf(4n, 13_333_332n), 300);
  assert.equal(hzOf(5n, 5_000_000n), 1000);
  assert.equal(hzOf(4n, 40_000_000n), 100);
  assert.equal(hzOf(4n, 16_006_000n), 250, 'NTP slews the tick by at most 0.05%');
  assert.equal(hzOf(4n, 12_000_000n), undefined, 'a pair read across a late clock update (a tick off)');
  assert.equal(hzOf(5n, 16_000_000n), undefined);
  assert.equal(hzOf(0n, 16_000_000n), undefined);
  assert.equal(hzOf(4n, 0n), undefined);
});
