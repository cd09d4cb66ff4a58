import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CidrError,
  canonicalCidr,
  formatPrefix,
  parseAddress,
  parseCidr,
  prefixContains,
  prefixContainsAddress,
  prefixFromBytes,
} from '../../common/src/cidr.js';

test('bare addresses become host prefixes', () => {
  assert.equal(canonicalCidr('192.168.0.1'), '192.168.0.1/32');
  assert.equal(canonicalCidr('2001:db8::1'), '2001:db8::1/128');
});

test('canonical IPv6 text follows RFC 5952', () => {
  assert.equal(canonicalCidr('2001:0DB8:0000:0000:0000:0000:0000:0000/32'), '2001:db8::/32');
  assert.equal(canonicalCidr('2001:db8:0:1:0:0:0:1'), '2001:db8:0:1::1/128');
  assert.equal(canonicalCidr('::/0'), '::/0');
  assert.equal(formatPrefix(parseCidr('::ffff:10.0.0.1', { unmap: false })), '::ffff:10.0.0.1/128');
  assert.equal(canonicalCidr('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1/128');
});

test('IPv4-mapped IPv6 is read as the IPv4 address (Go netip Unmap), unless unmap: false', () => {
  assert.equal(canonicalCidr('::ffff:10.0.0.1'), '10.0.0.1/32');
  assert.equal(canonicalCidr('::FFFF:c000:0201'), '192.0.2.1/32');
  assert.equal(canonicalCidr('::ffff:192.0.2.0/120'), '192.0.2.0/24');
  assert.equal(canonicalCidr('::ffff:0:0/96'), '0.0.0.0/0');
  assert.equal(canonicalCidr('::fffe:0:0/95'), '::fffe:0:0/95', 'shorter than /96 covers more than the mapped block: stays IPv6');
  assert.equal(canonicalCidr('::1:ffff:10.0.0.1'), '::1:ffff:a00:1/128', 'not mapped');
  assert.deepEqual(parseAddress('::ffff:198.51.100.7'), { family: 4, bytes: new Uint8Array([198, 51, 100, 7]) });
  assert.equal(parseAddress('::ffff:198.51.100.7', { unmap: false }).family, 6);
  assert.throws(
    () => parseCidr('::ffff:192.0.2.1/120'),
    (e: unknown) => e instanceof CidrError && e.reason === 'HOST_BITS_SET' && e.canonical === '192.0.2.0/24',
    'host bits are judged on the IPv4 form, and the canonical form is IPv4',
  );
});

test('errors quote the input cut short, never a whole 200 KB field', () => {
  const huge = '1'.repeat(200_000);
  for (const f of [() => parseCidr(huge), () => parseAddress(huge), () => parseCidr(`10.0.0.0/${huge}`)]) {
    assert.throws(
      f,
      (e: unknown) => e instanceof CidrError && e.message.length < 300 && /200000 characters|\(\d+ characters\)/.test(e.message),
    );
  }
});

test('host bits set names the canonical form', () => {
  assert.throws(
    () => parseCidr('10.1.2.3/8'),
    (e: unknown) => {
      assert.ok(e instanceof CidrError);
      assert.equal(e.reason, 'HOST_BITS_SET');
      assert.equal(e.canonical, '10.0.0.0/8');
      assert.match(e.message, /did you mean 10\.0\.0\.0\/8/);
      return true;
    },
  );
  assert.throws(() => parseCidr('2001:db8::1/32'), /did you mean 2001:db8::\/32/);
});

test('malformed input is rejected with a reason', () => {
  for (const bad of [
    '',
    '10.0.0',
    '10.0.0.256',
    '10.0.0.01',
    '10.0.0.0/33',
    '10.0.0.0/-1',
    '10.0.0.0/8/8',
    'fe80::1%eth0',
    '1:2:3:4:5:6:7:8:9',
    '::1::2',
    'hello',
    '10.0.0.0/',
    '2001:db8::/129',
  ]) {
    assert.throws(
      () => parseCidr(bad),
      (e: unknown) => e instanceof CidrError && e.reason === 'INVALID_CIDR',
      bad,
    );
  }
  assert.throws(
    () => parseAddress('10.0.0.0/8'),
    (e: unknown) => e instanceof CidrError && e.reason === 'INVALID_ADDRESS',
  );
});

test('containment', () => {
  const p8 = parseCidr('10.0.0.0/8');
  const p24 = parseCidr('10.1.2.0/24');
  assert.ok(prefixContains(p8, p24));
  assert.ok(!prefixContains(p24, p8));
  assert.ok(prefixContainsAddress(p24, parseAddress('10.1.2.200')));
  assert.ok(!prefixContainsAddress(p24, parseAddress('10.1.3.0')));
  assert.ok(prefixContainsAddress(parseCidr('0.0.0.0/0'), parseAddress('8.8.8.8')));
  assert.ok(!prefixContainsAddress(parseCidr('::/0'), parseAddress('8.8.8.8')), 'families never mix');
  assert.ok(prefixContainsAddress(parseCidr('10.0.0.0/9'), parseAddress('10.127.0.1')));
  assert.ok(!prefixContainsAddress(parseCidr('10.0.0.0/9'), parseAddress('10.128.0.1')));
});

test('wire bytes round-trip and are validated', () => {
  const p = prefixFromBytes(new Uint8Array([203, 0, 113, 0]), 24);
  assert.equal(formatPrefix(p), '203.0.113.0/24');
  assert.throws(() => prefixFromBytes(new Uint8Array([203, 0, 113, 7]), 24), /203\.0\.113\.0\/24/);
  assert.throws(() => prefixFromBytes(new Uint8Array([1, 2, 3]), 24), /4 or 16 bytes/);
});
