// The special-range classifier: which special (RFC 6890 / bogon) ranges a
// prefix overlaps, which of them are local (private, shared, loopback,
// link-local, unspecified / this network), and that documentation ranges are
// special but never local.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatPrefix, parseCidr, prefixFromBytes } from '../../common/src/cidr.js';
import { hasLocalOverlap, LOCAL_KINDS, localOverlaps, SPECIAL_RANGES, specialOverlaps } from '../../common/src/blocklist/special-ranges.js';
import { rng32 } from '../support/rng.js';

const show = (cidr: string, which: typeof specialOverlaps): string[] =>
  which(parseCidr(cidr)).map((o) => `${o.range.cidr} ${o.range.kind} ${o.relation}`);

// [prefix, every special overlap, the local ones]
const CASES: Array<[string, string[], string[]]> = [
  ['1.10.16.0/20', [], []],
  ['45.148.10.95', [], []],
  ['0.0.0.0/32', ['0.0.0.0/8 this-network within'], ['0.0.0.0/8 this-network within']],
  ['10.1.2.3', ['10.0.0.0/8 private within'], ['10.0.0.0/8 private within']],
  ['8.0.0.0/5', ['10.0.0.0/8 private covers'], ['10.0.0.0/8 private covers']],
  ['11.0.0.0/8', [], []],
  ['100.64.0.0/10', ['100.64.0.0/10 shared within'], ['100.64.0.0/10 shared within']],
  ['100.128.0.0/9', [], []],
  ['127.0.0.1', ['127.0.0.0/8 loopback within'], ['127.0.0.0/8 loopback within']],
  ['169.254.169.254', ['169.254.0.0/16 link-local within'], ['169.254.0.0/16 link-local within']],
  ['172.15.255.255', [], []],
  ['172.16.0.0', ['172.16.0.0/12 private within'], ['172.16.0.0/12 private within']],
  ['172.31.255.255', ['172.16.0.0/12 private within'], ['172.16.0.0/12 private within']],
  ['172.32.0.0', [], []],
  ['192.168.1.0/24', ['192.168.0.0/16 private within'], ['192.168.0.0/16 private within']],
  ['192.0.0.8', ['192.0.0.0/24 protocol-assignments within'], []],
  ['192.0.2.0/24', ['192.0.2.0/24 documentation within'], []],
  ['198.51.100.7', ['198.51.100.0/24 documentation within'], []],
  ['203.0.113.0/24', ['203.0.113.0/24 documentation within'], []],
  ['198.19.255.255', ['198.18.0.0/15 benchmarking within'], []],
  ['224.0.0.1', ['224.0.0.0/4 multicast within'], []],
  ['224.0.0.0/3', ['224.0.0.0/4 multicast covers', '240.0.0.0/4 reserved covers', '255.255.255.255/32 broadcast covers'], []],
  ['255.255.255.255', ['240.0.0.0/4 reserved within', '255.255.255.255/32 broadcast within'], []],
  [
    '0.0.0.0/0',
    [
      '0.0.0.0/8 this-network covers',
      '10.0.0.0/8 private covers',
      '100.64.0.0/10 shared covers',
      '127.0.0.0/8 loopback covers',
      '169.254.0.0/16 link-local covers',
      '172.16.0.0/12 private covers',
      '192.0.0.0/24 protocol-assignments covers',
      '192.0.2.0/24 documentation covers',
      '192.168.0.0/16 private covers',
      '198.18.0.0/15 benchmarking covers',
      '198.51.100.0/24 documentation covers',
      '203.0.113.0/24 documentation covers',
      '224.0.0.0/4 multicast covers',
      '240.0.0.0/4 reserved covers',
      '255.255.255.255/32 broadcast covers',
    ],
    [
      '0.0.0.0/8 this-network covers',
      '10.0.0.0/8 private covers',
      '100.64.0.0/10 shared covers',
      '127.0.0.0/8 loopback covers',
      '169.254.0.0/16 link-local covers',
      '172.16.0.0/12 private covers',
      '192.168.0.0/16 private covers',
    ],
  ],
  ['::/128', ['::/128 unspecified within'], ['::/128 unspecified within']],
  ['::1', ['::1/128 loopback within'], ['::1/128 loopback within']],
  ['::2', [], []],
  ['::ffff:10.0.0.1', ['10.0.0.0/8 private within'], ['10.0.0.0/8 private within']],
  ['::ffff:192.0.2.1', ['192.0.2.0/24 documentation within'], []],
  ['::fffe:0:0/95', ['::ffff:0.0.0.0/96 ipv4-mapped covers'], []],
  ['64:ff9b::192.0.2.1', ['64:ff9b::/96 translation within'], []],
  ['64:ff9b:1::/48', ['64:ff9b:1::/48 translation within'], []],
  ['100::1', ['100::/64 discard-only within'], []],
  ['2001::/16', ['2001::/23 protocol-assignments covers', '2001:2::/48 benchmarking covers', '2001:db8::/32 documentation covers'], []],
  ['2001:db8::/48', ['2001:db8::/32 documentation within'], []],
  ['3fff:a00::/24', ['3fff::/20 documentation within'], []],
  ['2002::/16', [], []],
  ['2a06:e480::/29', [], []],
  ['fc00::/7', ['fc00::/7 unique-local within'], ['fc00::/7 unique-local within']],
  ['fd12:3456::/48', ['fc00::/7 unique-local within'], ['fc00::/7 unique-local within']],
  ['fe80::1', ['fe80::/10 link-local within'], ['fe80::/10 link-local within']],
  ['febf:ffff::', ['fe80::/10 link-local within'], ['fe80::/10 link-local within']],
  ['fec0::1', ['fec0::/10 reserved within'], []],
  ['ff02::1', ['ff00::/8 multicast within'], []],
];

test('special and local overlaps of a prefix', () => {
  for (const [cidr, special, local] of CASES) {
    assert.deepEqual(show(cidr, specialOverlaps), special, `special ${cidr}`);
    assert.deepEqual(show(cidr, localOverlaps), local, `local ${cidr}`);
    assert.equal(hasLocalOverlap(parseCidr(cidr)), local.length > 0, `hasLocalOverlap ${cidr}`);
  }
});

test('hasLocalOverlap equals localOverlaps on 100,000 random IPv4 prefixes of every length', () => {
  const next = rng32(6890);
  let local = 0;
  for (let i = 0; i < 100_000; i++) {
    const len = next() % 33;
    const a = next();
    const masked = len === 0 ? 0 : (a >>> (32 - len)) << (32 - len);
    const p = prefixFromBytes(new Uint8Array([masked >>> 24, (masked >>> 16) & 255, (masked >>> 8) & 255, masked & 255]), len);
    const want = localOverlaps(p).length > 0;
    if (want) local++;
    assert.equal(hasLocalOverlap(p), want, `${p.bytes.join('.')}/${len}`);
  }
  assert.ok(local > 1_000, `some were local (${local})`);
});

test('::/0 covers every IPv6 special range; the local ones are unspecified, loopback, unique local, link-local', () => {
  const v6 = SPECIAL_RANGES.filter((r) => r.prefix.family === 6).map((r) => r.cidr);
  assert.deepEqual(
    specialOverlaps(parseCidr('::/0')).map((o) => o.range.cidr),
    v6,
  );
  assert.deepEqual(
    localOverlaps(parseCidr('::/0')).map((o) => o.range.cidr),
    ['::/128', '::1/128', 'fc00::/7', 'fe80::/10'],
  );
});

test('the table: the ranges the import relies on, documentation never local', () => {
  for (const r of SPECIAL_RANGES) assert.equal(r.local, LOCAL_KINDS.has(r.kind), r.cidr);
  const cidrs = SPECIAL_RANGES.map((r) => r.cidr);
  for (const required of [
    '0.0.0.0/8',
    '10.0.0.0/8',
    '100.64.0.0/10',
    '127.0.0.0/8',
    '169.254.0.0/16',
    '172.16.0.0/12',
    '192.0.0.0/24',
    '192.0.2.0/24',
    '192.168.0.0/16',
    '198.18.0.0/15',
    '198.51.100.0/24',
    '203.0.113.0/24',
    '224.0.0.0/4',
    '240.0.0.0/4',
    '255.255.255.255/32',
    '::/128',
    '::1/128',
    '::ffff:0:0/96',
    '64:ff9b::/96',
    '100::/64',
    '2001:db8::/32',
    'fc00::/7',
    'fe80::/10',
    'ff00::/8',
  ]) {
    assert.ok(cidrs.includes(formatPrefix(parseCidr(required, { unmap: false }))), required);
  }
  const local = SPECIAL_RANGES.filter((r) => r.local).map((r) => r.cidr);
  assert.deepEqual(local, [
    '0.0.0.0/8',
    '10.0.0.0/8',
    '100.64.0.0/10',
    '127.0.0.0/8',
    '169.254.0.0/16',
    '172.16.0.0/12',
    '192.168.0.0/16',
    '::/128',
    '::1/128',
    'fc00::/7',
    'fe80::/10',
  ]);
});
