// Range decomposition: the minimal exact set of CIDRs, checked against two
// independent references: brute force over every address of small random
// ranges, and recursive halving of the whole space for large ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Address, type Family, formatPrefix, parseAddress } from '../../common/src/cidr.js';
import { rangeToPrefixes } from '../../common/src/blocklist/range-to-prefixes.js';
import { rng32 } from '../support/rng.js';

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

// A local conversion, so the references share no code with the module.
function fromInt(v: bigint, family: Family): Address {
  const bytes = new Uint8Array(family === 4 ? 4 : 16);
  for (let i = bytes.length - 1, x = v; i >= 0; i--, x /= 256n) bytes[i] = Number(x % 256n);
  return { family, bytes };
}
function cidr(first: bigint, len: number, family: Family): string {
  return formatPrefix({ ...fromInt(first, family), len });
}

/** For every address, the largest aligned block around it inside [s, e]; distinct blocks in order. */
function bruteForce(s: bigint, e: bigint, family: Family): string[] {
  const bits = BITS[family];
  const out: string[] = [];
  let last = '';
  for (let a = s; a <= e; a++) {
    let len = bits;
    while (len > 0) {
      const size = 1n << BigInt(bits - len + 1);
      const first = a - (a % size);
      if (first < s || first + size - 1n > e) break;
      len--;
    }
    const size = 1n << BigInt(bits - len);
    const first = a - (a % size);
    const key = `${first}/${len}`;
    if (key !== last) out.push(cidr(first, len, family));
    last = key;
  }
  return out;
}

/** Halve the whole space until a block is inside [s, e] or outside it. */
function recursive(s: bigint, e: bigint, family: Family): string[] {
  const bits = BITS[family];
  const out: string[] = [];
  const walk = (first: bigint, len: number): void => {
    const size = 1n << BigInt(bits - len);
    const lastAddr = first + size - 1n;
    if (lastAddr < s || first > e) return;
    if (first >= s && lastAddr <= e) {
      out.push(cidr(first, len, family));
      return;
    }
    walk(first, len + 1);
    walk(first + size / 2n, len + 1);
  };
  walk(0n, 0);
  return out;
}

function decompose(s: bigint, e: bigint, family: Family): string[] {
  return rangeToPrefixes(fromInt(s, family), fromInt(e, family)).map(formatPrefix);
}

function randomInt(next: () => number, bits: number): bigint {
  let v = 0n;
  for (let i = 0; i < bits; i += 32) v = (v << 32n) | BigInt(next());
  return v & ((1n << BigInt(bits)) - 1n);
}

test('small random ranges match the brute-force reference (IPv4 and IPv6)', () => {
  const next = rng32(0x5eed19);
  for (const family of [4, 6] as const) {
    const bits = BITS[family];
    const max = (1n << BigInt(bits)) - 1n;
    for (let i = 0; i < 400; i++) {
      // Random positions, positions aligned to 2^k (so larger blocks appear), and the ends of the space.
      let s = randomInt(next, bits);
      if (i % 4 === 1) s -= s % (1n << BigInt(next() % 12));
      if (i % 4 === 2) s = BigInt(next() % 300);
      const span = BigInt(next() % 700);
      let e = s + span > max ? max : s + span;
      if (i % 4 === 3) {
        e = max - BigInt(next() % 300);
        const back = BigInt(next() % 700);
        s = e - back < 0n ? 0n : e - back;
      }
      const got = decompose(s, e, family);
      assert.deepEqual(got, bruteForce(s, e, family), `IPv${family} ${s}..${e}`);
    }
  }
});

test('large random ranges match the recursive reference and stay within 2*bits-2 prefixes', () => {
  const next = rng32(0xb10c);
  for (const family of [4, 6] as const) {
    const bits = BITS[family];
    for (let i = 0; i < 200; i++) {
      const a = randomInt(next, bits);
      const b = randomInt(next, bits) >> BigInt(next() % bits);
      const [s, e] = a <= b ? [a, b] : [b, a];
      const got = decompose(s, e, family);
      assert.deepEqual(got, recursive(s, e, family), `IPv${family} ${s}..${e}`);
      assert.ok(got.length <= Math.max(1, 2 * bits - 2), `${got.length} prefixes`);
    }
  }
});

test('known ranges', () => {
  const cases: Array<[string, string, string[] | number]> = [
    ['0.0.0.0', '255.255.255.255', ['0.0.0.0/0']],
    ['::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', ['::/0']],
    ['192.0.2.7', '192.0.2.7', ['192.0.2.7/32']],
    ['192.0.2.0', '192.0.2.255', ['192.0.2.0/24']],
    ['192.0.2.5', '192.0.2.10', ['192.0.2.5/32', '192.0.2.6/31', '192.0.2.8/31', '192.0.2.10/32']],
    ['198.51.100.255', '198.51.101.0', ['198.51.100.255/32', '198.51.101.0/32']],
    ['2001:db8::1', '2001:db8::6', ['2001:db8::1/128', '2001:db8::2/127', '2001:db8::4/127', '2001:db8::6/128']],
    ['0.0.0.1', '255.255.255.254', 62],
    ['::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe', 254],
  ];
  for (const [s, e, want] of cases) {
    const got = rangeToPrefixes(parseAddress(s), parseAddress(e)).map(formatPrefix);
    if (typeof want === 'number') assert.equal(got.length, want, `${s}-${e}`);
    else assert.deepEqual(got, want, `${s}-${e}`);
  }
});

test('a backwards or mixed-family range throws', () => {
  assert.throws(() => rangeToPrefixes(parseAddress('192.0.2.9'), parseAddress('192.0.2.1')), RangeError);
  assert.throws(() => rangeToPrefixes(parseAddress('192.0.2.1'), parseAddress('2001:db8::1')), RangeError);
});
