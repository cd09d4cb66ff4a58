// The list diff (control-plane/src/lists/entry-set.ts) against a plain Set
// of canonical CIDRs: random IPv4 and IPv6 sets, stored text as Postgres
// prints it, repeats; the diff is exactly "added = desired - current,
// removed = current - desired".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalCidr, formatPrefix, parseCidr, prefixFromBytes } from '../../common/src/cidr.js';
import { diffEntries, EntrySet } from '../../control-plane/src/lists/entry-set.js';
import { rng32 } from '../support/rng.js';

function randomCidr(next: () => number): string {
  if (next() % 10 === 0) {
    const bytes = new Uint8Array(16);
    bytes[0] = 0x20;
    bytes[1] = 0x01;
    bytes[2] = 0x0d;
    bytes[3] = 0xb8;
    bytes[15] = next() % 8;
    const len = [128, 64, 48][next() % 3]!;
    const masked = parseCidr(`${formatPrefix({ family: 6, bytes, len: 128 }).split('/')[0]}/128`);
    return formatPrefix(
      prefixFromBytes(
        len === 128 ? masked.bytes : new Uint8Array([...masked.bytes.slice(0, len / 8), ...new Uint8Array(16 - len / 8)]),
        len,
      ),
    );
  }
  const len = [32, 32, 32, 24, 16, 31][next() % 6]!;
  const a = (0x2d000000 + (next() % 4096)) >>> 0;
  const m = len === 32 ? a : ((a >>> (32 - len)) << (32 - len)) >>> 0;
  return `${m >>> 24}.${(m >>> 16) & 255}.${(m >>> 8) & 255}.${m & 255}/${len}`;
}

test('diffEntries equals the set difference, over 200 random pairs of sets', () => {
  const next = rng32(2019);
  for (let round = 0; round < 200; round++) {
    const cur = Array.from({ length: next() % 300 }, () => randomCidr(next));
    const want = Array.from({ length: next() % 300 }, () => randomCidr(next));
    const current = new EntrySet();
    for (const c of cur) current.addStored(c);
    const desired = new EntrySet();
    for (const c of want) desired.add(parseCidr(c));
    const d = diffEntries(current, desired);
    const curSet = new Set(cur.map(canonicalCidr));
    const wantSet = new Set(want.map(canonicalCidr));
    assert.deepEqual(d.added.sort(), [...wantSet].filter((c) => !curSet.has(c)).sort(), `round ${round}: added`);
    assert.deepEqual(d.removed.sort(), [...curSet].filter((c) => !wantSet.has(c)).sort(), `round ${round}: removed`);
    assert.equal(desired.size, wantSet.size, 'repeats counted once');
    assert.equal(desired.duplicates, want.length - wantSet.size);
    assert.deepEqual(desired.cidrs().sort(), [...wantSet].sort());
  }
});

test('stored text: the fast reader takes exactly what Postgres prints for IPv4, the rest goes the general way', () => {
  const cases: Array<[string, string]> = [
    ['45.0.0.7/32', '45.0.0.7/32'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['255.255.255.255/32', '255.255.255.255/32'],
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['2001:db8::/32', '2001:db8::/32'],
    ['2001:db8::1/128', '2001:db8::1/128'],
    ['45.0.0.7', '45.0.0.7/32'],
  ];
  for (const [stored, want] of cases) {
    const s = new EntrySet();
    s.addStored(`x${stored}y`, 1, stored.length + 1);
    assert.deepEqual(s.cidrs(), [want], stored);
  }
  for (const bad of ['1.2.3/8', '1..2.3/8', '256.1.1.1/32', '1.2.3.4/', '1.2.3.4/33', '.1.2.3/8']) {
    assert.throws(() => new EntrySet().addStored(bad), `${bad} is not read as some other prefix`);
  }
});
