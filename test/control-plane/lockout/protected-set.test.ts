// The lockout guard's protected set on its own (pure): "which protected
// entry does a deny of this prefix overlap" against a brute-force answer over
// random prefixes of both families, and the static sources (loopback, listen
// addresses with a wildcard bind, management networks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Prefix, maskBytes, parseCidr, prefixContains } from '../../../common/src/cidr.js';
import { ProtectedSet, protectedEntry } from '../../../control-plane/src/lockout/protected-set.js';
import { addressPrefix, staticProtectedEntries } from '../../../control-plane/src/lockout/protected-sources.js';
import { rngUnit } from '../../support/rng.js';

function randomPrefix(rnd: () => number, family: 4 | 6, near: Prefix | undefined): Prefix {
  const n = family === 4 ? 4 : 16;
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = Math.floor(rnd() * 256);
  // Half the time start from a protected entry's address, so overlaps are common.
  if (near && near.family === family && rnd() < 0.5) bytes.set(near.bytes);
  const max = family === 4 ? 32 : 128;
  const len = rnd() < 0.3 ? max : Math.floor(rnd() * (max + 1));
  return { family, bytes: maskBytes(bytes, len), len };
}

const overlaps = (a: Prefix, b: Prefix) => prefixContains(a, b) || prefixContains(b, a);

test('find() equals a brute-force overlap check over random prefixes', () => {
  const rnd = rngUnit(1515);
  for (let round = 0; round < 20; round++) {
    const entries = [];
    for (let i = 0; i < 1 + Math.floor(rnd() * 40); i++) {
      entries.push(protectedEntry(randomPrefix(rnd, rnd() < 0.7 ? 4 : 6, undefined), 'management', `e${i}`));
    }
    const set = new ProtectedSet(entries);
    for (let q = 0; q < 500; q++) {
      const near = entries[Math.floor(rnd() * entries.length)]!.prefix;
      const p = randomPrefix(rnd, rnd() < 0.7 ? 4 : 6, near);
      const got = set.find(p);
      if (p.family === 4) {
        const addr = ((p.bytes[0]! << 24) | (p.bytes[1]! << 16) | (p.bytes[2]! << 8) | p.bytes[3]!) >>> 0;
        assert.equal(set.findV4(addr, p.len), got, 'findV4 (a list line as numbers) is find');
      }
      const want = entries.filter((e) => overlaps(e.prefix, p));
      if (want.length === 0) assert.equal(got, undefined);
      else
        assert.ok(got && want.includes(got), `round ${round}: ${JSON.stringify(p)} overlaps ${want.map((e) => e.cidr)}, got ${got?.cidr}`);
    }
  }
});

test('edges: a /32 next to an entry, a /0, a deny inside a network, a host route equal to an entry', () => {
  const set = new ProtectedSet([
    protectedEntry(parseCidr('192.0.2.10/32'), 'listen', 'cp'),
    protectedEntry(parseCidr('10.99.0.0/16'), 'management', 'mgmt'),
    protectedEntry(parseCidr('2001:db8::1/128'), 'agent', 'node'),
  ]);
  assert.equal(set.find(parseCidr('192.0.2.11/32')), undefined);
  assert.equal(set.find(parseCidr('192.0.2.9/32')), undefined);
  assert.equal(set.find(parseCidr('192.0.2.10/32'))?.why, 'cp');
  assert.equal(set.find(parseCidr('192.0.2.8/29'))?.why, 'cp');
  assert.equal(set.find(parseCidr('0.0.0.0/0'))?.why, 'mgmt', 'the lowest entry');
  assert.equal(set.find(parseCidr('10.99.200.0/24'))?.why, 'mgmt', 'a deny inside a management network');
  assert.equal(set.find(parseCidr('10.0.0.0/8'))?.why, 'mgmt');
  assert.equal(set.find(parseCidr('10.100.0.0/16')), undefined);
  assert.equal(set.find(parseCidr('255.255.255.255/32')), undefined);
  assert.equal(set.find(parseCidr('2001:db8::/127'))?.why, 'node');
  assert.equal(set.find(parseCidr('2001:db8::2/127')), undefined);
  assert.equal(set.find(parseCidr('::/0'))?.why, 'node');
});

test('static sources: loopback always; a wildcard bind protects every host address; named listen hosts; management networks', () => {
  const entries = staticProtectedEntries({
    grpcHost: '0.0.0.0',
    httpHost: 'cp.internal',
    interfaceAddresses: ['127.0.0.1', '192.0.2.2', 'fe80::1%eth0', '::ffff:198.51.100.3'],
    resolved: new Map([['cp.internal', ['203.0.113.5']]]),
    protectedCidrs: ['10.99.0.0/16'],
  });
  assert.deepEqual(
    entries.map((e) => `${e.cidr} ${e.kind}`),
    [
      '127.0.0.0/8 loopback',
      '::1/128 loopback',
      '127.0.0.1/32 listen',
      '192.0.2.2/32 listen',
      'fe80::1/128 listen',
      '198.51.100.3/32 listen',
      '203.0.113.5/32 listen',
      '10.99.0.0/16 management',
    ],
  );
  assert.match(entries.find((e) => e.cidr === '203.0.113.5/32')!.why, /HTTP listen address \(--http-host cp\.internal\)/);
  assert.equal(addressPrefix('unix:/run/cp.sock'), undefined);
  assert.equal(addressPrefix('[2001:db8::7]')?.len, 128);
});
