// The IPv4 fast path (common/src/blocklist/fast-ipv4.ts and the text grammar's
// fastLine) against the general path: for every input, either the fast path
// declines or it gives exactly what parseCidr / the general grammar gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CidrError, formatPrefix, parseCidr } from '../../common/src/cidr.js';
import { fastIpv4Prefix } from '../../common/src/blocklist/fast-ipv4.js';
import type { LineOutcome } from '../../common/src/blocklist/line-outcome.js';
import { fastTextLine, generalTextLine, parseTextLine } from '../../common/src/blocklist/text-line.js';
import { rng32 } from '../support/rng.js';

function general(s: string): string {
  try {
    return formatPrefix(parseCidr(s));
  } catch (e) {
    if (e instanceof CidrError) return `error ${e.reason}`;
    throw e;
  }
}

function shown(o: LineOutcome): string {
  if (o.kind === 'prefixes') return `${o.prefixes.map(formatPrefix).join(' ')}${o.unmapped ? ' (unmapped)' : ''}`;
  return o.kind === 'error' ? `${o.reason}: ${o.message}` : 'skip';
}

const TABLE: readonly (readonly [string, string | null])[] = [
  ['192.0.2.1', '192.0.2.1/32'],
  ['0.0.0.0', '0.0.0.0/32'],
  ['255.255.255.255', '255.255.255.255/32'],
  ['198.51.100.0/24', '198.51.100.0/24'],
  ['0.0.0.0/0', '0.0.0.0/0'],
  ['10.0.0.0/8', '10.0.0.0/8'],
  ['128.0.0.0/1', '128.0.0.0/1'],
  ['192.0.2.1/32', '192.0.2.1/32'],
  // Declined: the general path decides (and words the error).
  ['10.1.2.3/8', null],
  ['192.0.2.01', null],
  ['192.0.2.1/024', null],
  ['192.0.2.1/33', null],
  ['192.0.2.256', null],
  ['192.0.2', null],
  ['192.0.2.1.5', null],
  ['1922.0.2.1', null],
  ['192.0.2.1/', null],
  ['192.0.2.1//', null],
  ['', null],
  ['::1', null],
  ['::ffff:192.0.2.1', null],
  [' 192.0.2.1', null],
];

test('fastIpv4Prefix: the table', () => {
  for (const [input, want] of TABLE) {
    const p = fastIpv4Prefix(input);
    assert.equal(p === null ? null : formatPrefix(p), want, JSON.stringify(input));
    if (p) assert.equal(general(input), want, `parseCidr agrees on ${JSON.stringify(input)}`);
  }
});

/** Strings near the IPv4 grammar: random octets, lengths, leading zeros, stray characters. */
function randomToken(next: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[next() % xs.length]!;
  const octet = () => pick(['0', '00', '01', '9', '10', '99', '100', '199', '255', '256', '300', '1000', String(next() % 256)]);
  const parts = [octet(), octet(), octet(), octet()];
  if (next() % 8 === 0) parts.pop();
  if (next() % 8 === 0) parts.push(octet());
  let s = parts.join('.');
  const r = next() % 6;
  if (r === 0) s += `/${next() % 40}`;
  else if (r === 1) s += `/${pick(['', '0', '00', '08', '32', '33', '24', '1'])}`;
  else if (r === 2) s = `${(next() % 256) & ~((1 << (next() % 8)) - 1)}.0.0.0/${pick(['1', '2', '4', '5', '8'])}`;
  if (next() % 10 === 0) {
    const at = next() % (s.length + 1);
    s = s.slice(0, at) + pick(['x', ' ', '-', ':', '.', '/', '+']) + s.slice(at);
  }
  return s;
}

test('fastIpv4Prefix agrees with parseCidr on 200,000 near-IPv4 strings', () => {
  const next = rng32(19);
  let accepted = 0;
  for (let i = 0; i < 200_000; i++) {
    const s = randomToken(next);
    const p = fastIpv4Prefix(s);
    if (p === null) continue;
    accepted++;
    assert.equal(formatPrefix(p), general(s), JSON.stringify(s));
  }
  assert.ok(accepted > 20_000, `the fast path took a fair share (${accepted})`);
});

test('the text grammar: parseTextLine (fast path first) equals the general grammar on 20,000 lines around a token', () => {
  const next = rng32(1919);
  const pick = <T>(xs: readonly T[]): T => xs[next() % xs.length]!;
  const around = [
    '',
    ' ',
    '\t',
    '  ',
    ' ; SBL1',
    ';SBL1',
    ' # c',
    '#c',
    ' // c',
    '//c',
    '\t10',
    ' name',
    ' - 192.0.2.9',
    '-192.0.2.9',
    ' 192.0.2.9',
    ' x-y',
    '\v',
  ];
  let fast = 0;
  for (let i = 0; i < 20_000; i++) {
    const line = `${pick(['', ' ', '\t', '\v'])}${randomToken(next)}${pick(around)}${pick(around)}`;
    for (const pairs of [false, true]) {
      if (fastTextLine(line, pairs) !== null) fast++;
      for (const hostBits of ['reject', 'mask'] as const) {
        assert.equal(
          shown(parseTextLine(line, pairs, hostBits)),
          shown(generalTextLine(line, pairs, hostBits)),
          `${JSON.stringify(line)} pairs=${pairs} ${hostBits}`,
        );
      }
    }
  }
  assert.ok(fast > 2_000, `the fast path took a fair share (${fast})`);
});
