// Kernel tables and compact prefix keys, as tables: names, IPv4 words and
// masks, key round trips, and keys that must differ (table, direction,
// length) or agree (the same prefix).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr } from '../../common/src/cidr.js';
import {
  TABLES,
  type TableId,
  mask16,
  tableDirection,
  tableFamily,
  tableName,
  v4Key,
  v4KeyWord,
  v4Mask,
  v4Word,
  v6Key,
  v6KeyBytes,
} from '../../node-agent/src/reconcile/prefix-key.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('tables: id -> direction, family, name', () => {
  const rows: [TableId, string, number, string][] = [
    [0, 'ingress', 4, 'ingress IPv4'],
    [1, 'ingress', 6, 'ingress IPv6'],
    [2, 'egress', 4, 'egress IPv4'],
    [3, 'egress', 6, 'egress IPv6'],
  ];
  assert.deepEqual([...TABLES], [0, 1, 2, 3]);
  for (const [t, direction, family, name] of rows) {
    assert.equal(tableDirection(t), direction, `direction of ${t}`);
    assert.equal(tableFamily(t), family, `family of ${t}`);
    assert.equal(tableName(t), name, `name of ${t}`);
  }
});

test('v4Word: address bytes (network order) at an offset -> unsigned 32-bit number', () => {
  const rows: [number[], number, number][] = [
    [[0, 0, 0, 0], 0, 0],
    [[10, 1, 2, 3], 0, 0x0a010203],
    [[255, 255, 255, 255], 0, 0xffffffff],
    [[128, 0, 0, 1], 0, 0x80000001],
    [[9, 9, 192, 0, 2, 1], 2, 0xc0000201],
  ];
  for (const [bytes, off, word] of rows) assert.equal(v4Word(Uint8Array.from(bytes), off), word, `${bytes} at ${off}`);
});

test('v4Mask: prefix length -> network mask', () => {
  const rows: [number, number][] = [
    [0, 0],
    [1, 0x80000000],
    [8, 0xff000000],
    [17, 0xffff8000],
    [24, 0xffffff00],
    [31, 0xfffffffe],
    [32, 0xffffffff],
  ];
  for (const [len, mask] of rows) assert.equal(v4Mask(len), mask, `/${len}`);
});

test('v4Key: exact, one per (direction, address, length), and the word comes back', () => {
  const rows: [TableId, string][] = [
    [0, '0.0.0.0/0'],
    [0, '10.0.0.0/8'],
    [0, '10.0.0.0/9'],
    [2, '10.0.0.0/8'],
    [0, '192.0.2.255/32'],
    [2, '255.255.255.255/32'],
    [0, '255.255.255.254/31'],
  ];
  const keys = new Set<number>();
  for (const [t, cidr] of rows) {
    const p = parseCidr(cidr);
    const word = v4Word(p.bytes);
    const key = v4Key(t, word, p.len);
    assert.ok(Number.isSafeInteger(key), `${cidr}: exact in a double`);
    assert.equal(v4KeyWord(key), word, `${cidr}: word back`);
    assert.equal(key % 64, p.len, `${cidr}: length in the low bits`);
    keys.add(key);
  }
  assert.equal(keys.size, rows.length, 'every (direction, prefix) has its own key');
  // IPv4 tables of one direction share the key space with nothing else: table 0 and 2 differ only by direction.
  assert.notEqual(v4Key(0, 0, 0), v4Key(2, 0, 0));
});

test('v6Key: 18 characters (table, length, 16 bytes), one per (table, prefix), the bytes come back', () => {
  const rows: [TableId, string][] = [
    [1, '::/0'],
    [1, '2001:db8::/32'],
    [1, '2001:db8::/33'],
    [3, '2001:db8::/32'],
    [1, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128'],
    [3, '2001:db8::1/128'],
  ];
  const keys = new Set<string>();
  for (const [t, cidr] of rows) {
    const p = parseCidr(cidr);
    const key = v6Key(t, p.bytes, p.len);
    assert.equal(key.length, 18, cidr);
    assert.equal(key.charCodeAt(0), t, `${cidr}: table`);
    assert.equal(key.charCodeAt(1), p.len, `${cidr}: length`);
    assert.equal(hex(v6KeyBytes(key)), hex(p.bytes), `${cidr}: bytes back`);
    keys.add(key);
  }
  assert.equal(keys.size, rows.length);
  // The same prefix read at an offset of a larger buffer gives the same key.
  const buf = new Uint8Array(40);
  const p = parseCidr('2001:db8:1::/48');
  buf.set(p.bytes, 16);
  assert.equal(v6Key(1, buf, 48, 16), v6Key(1, p.bytes, 48));
});

test('mask16: keeps the first `len` bits of 16 bytes at an offset', () => {
  const ones = new Uint8Array(16).fill(0xff);
  const rows: [number, string][] = [
    [0, '00000000000000000000000000000000'],
    [1, '80000000000000000000000000000000'],
    [12, 'fff00000000000000000000000000000'],
    [64, 'ffffffffffffffff0000000000000000'],
    [127, 'fffffffffffffffffffffffffffffffe'],
    [128, 'ffffffffffffffffffffffffffffffff'],
  ];
  for (const [len, want] of rows) assert.equal(hex(mask16(ones, len)), want, `/${len}`);
  const addr = parseCidr('2001:db8:abcd:1234::1/128').bytes;
  const buf = new Uint8Array(20);
  buf.set(addr, 4);
  assert.equal(hex(mask16(buf, 36, 4)), hex(parseCidr('2001:db8:a000::/36').bytes), 'at an offset');
  assert.equal(hex(addr), hex(parseCidr('2001:db8:abcd:1234::1/128').bytes), 'the input is not changed');
});
