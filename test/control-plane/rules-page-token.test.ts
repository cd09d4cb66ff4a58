// control-plane/src/rules/page-token.ts: page tokens round-trip, are bound
// to the filters they were issued for, are signed (a cursor anyone can
// compute is refused), and reject anything this server did not issue with
// INVALID_PAGE_TOKEN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetwallError } from '../../control-plane/src/errors/fleetwall-error.js';
import { filterFingerprint, PageTokens } from '../../control-plane/src/rules/page-token.js';

const tokens = new PageTokens('test-key');

test('filterFingerprint: same filters, same fingerprint; any difference, another one', () => {
  const base = { a: 1, d: 0, s: '{}', t: '', c: '' };
  const fp = filterFingerprint(base);
  assert.match(fp, /^[A-Za-z0-9_-]{16}$/, 'base64url, 16 characters');
  assert.equal(filterFingerprint({ ...base }), fp);
  const variants = [
    { ...base, a: 2 },
    { ...base, d: 1 },
    { ...base, s: '{"role":"web"}' },
    { ...base, t: 'ssh' },
    { ...base, c: '203.0.113.9' },
  ];
  const fps = variants.map(filterFingerprint);
  for (const f of fps) assert.notEqual(f, fp);
  assert.equal(new Set(fps).size, fps.length, 'all distinct');
});

test('encode -> decode round-trips the last id (and a node name) for the same filters', () => {
  const fp = filterFingerprint({ t: 'x' });
  for (const id of [0n, 1n, 100n, 9_007_199_254_740_993n, 9_223_372_036_854_775_807n]) {
    const token = tokens.encode(id.toString(), fp);
    assert.match(token, /^[A-Za-z0-9_.-]+$/, 'URL-safe');
    assert.equal(tokens.decodeId(token, fp), id, String(id));
  }
  assert.equal(tokens.decode(tokens.encode('web-1.example', fp), fp), 'web-1.example');
});

test('a token is signed: another key, an edited cursor or a cursor beyond int8 is not one this server issued', () => {
  const fp = filterFingerprint({ t: 'x' });
  const token = tokens.encode('5', fp);
  const refused = (t: string, name: string) =>
    assert.throws(
      () => tokens.decodeId(t, fp),
      (e: unknown) => e instanceof FleetwallError && e.reason === 'INVALID_PAGE_TOKEN' && /not one this server issued/.test(e.message),
      name,
    );
  refused(new PageTokens('another-key').encode('5', fp), 'signed with another key');
  const [, mac] = token.split('.');
  const forged = `${Buffer.from(JSON.stringify({ a: '99999999999999999999999', f: fp })).toString('base64url')}.${mac}`;
  refused(forged, 'a huge cursor with a copied signature');
  refused(tokens.encode('18446744073709551615', fp), 'a signed cursor beyond int8');
  refused(token.slice(0, -2), 'a cut signature');
  refused('x'.repeat(5000), 'a very long token');
});

test('decode rejects tokens for other filters and tokens this server never issued', () => {
  const fp = filterFingerprint({ t: 'x' });
  const other = filterFingerprint({ t: 'y' });
  const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
  const cases: Array<[string, string, RegExp]> = [
    ['other filters', tokens.encode('5', other), /different filters/],
    ['not base64 JSON', 'definitely-not-a-token', /not one this server issued/],
    ['empty JSON object', b64({}), /not one this server issued/],
    ['id not a string', b64({ a: 5, f: fp }), /not one this server issued/],
    ['negative id', b64({ a: '-5', f: fp }), /not one this server issued/],
    ['id not digits', b64({ a: '5x', f: fp }), /not one this server issued/],
    ['no fingerprint', b64({ a: '5' }), /not one this server issued/],
    ['JSON null', b64('null'), /not one this server issued/],
  ];
  for (const [name, token, message] of cases) {
    assert.throws(
      () => tokens.decodeId(token, fp),
      (e: unknown) => e instanceof FleetwallError && e.reason === 'INVALID_PAGE_TOKEN' && message.test(e.message),
      name,
    );
  }
});
