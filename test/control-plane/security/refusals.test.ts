// Refusals that are clear and cheap (issue 15 part 6) and the two modes
// besides TLS: the DNS-rebinding guard on a loopback bind (421 for a Host
// that names another host), a presented token is checked even where
// loopback callers are trusted, --insecure-no-auth warns at start and shows
// on /healthz, repeated failures from one peer are held back (bounded), and
// a revocation the NOTIFY missed still takes effect within the cache TTL,
// and a busy client's calls share look-ups and do not wait for the store.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { ListRulesRequest } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { startControlPlane } from '../../../control-plane/src/control-plane.js';
import { PenaltyBox } from '../../../control-plane/src/auth/penalty-box.js';
import { TokenVerifier } from '../../../control-plane/src/auth/token-verifier.js';
import { generateToken, hashToken } from '../../../control-plane/src/auth/api-token.js';
import { isLoopbackHost, normalizeHostName, securityMode } from '../../../control-plane/src/auth/security-mode.js';
import type { TokenRow } from '../../../control-plane/src/store/token-store.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres.js';
import { callError, connectClients, startTestControlPlane, testConfig, unaryCall } from '../../support/control-plane.js';
import { httpsJson } from '../../support/tls-control-plane.js';

let pg: TestPostgres;

before(async () => {
  pg = await startTestPostgres();
});

after(async () => {
  await pg?.stop();
});

test('security mode: loopback without TLS trusts local callers; any other bind, --tls or a certificate turns TLS on', () => {
  const base = { grpcHost: '127.0.0.1', httpHost: '127.0.0.1', tls: false, insecureNoAuth: false, tlsCertFile: undefined };
  assert.equal(securityMode(base), 'loopback-trust');
  assert.equal(securityMode({ ...base, httpHost: '::1' }), 'loopback-trust');
  assert.equal(securityMode({ ...base, grpcHost: 'localhost' }), 'loopback-trust');
  assert.equal(securityMode({ ...base, grpcHost: '0.0.0.0' }), 'tls');
  assert.equal(securityMode({ ...base, httpHost: '::' }), 'tls');
  assert.equal(securityMode({ ...base, httpHost: '10.0.0.5' }), 'tls');
  assert.equal(securityMode({ ...base, tls: true }), 'tls');
  assert.equal(securityMode({ ...base, tlsCertFile: '/etc/fw/tls.crt' }), 'tls');
  assert.equal(securityMode({ ...base, grpcHost: '0.0.0.0', insecureNoAuth: true }), 'insecure');
  assert.ok(isLoopbackHost('127.0.0.53') && !isLoopbackHost('128.0.0.1') && !isLoopbackHost('localhost.example.com'));
  assert.equal(normalizeHostName('LocalHost:8080'), 'localhost');
  assert.equal(normalizeHostName('[::1]:8080'), '::1');
  assert.equal(normalizeHostName('evil.example.'), 'evil.example');
});

test('loopback bind: the Host header must name this host (DNS rebinding), a presented token is still checked', async () => {
  const cp = await startTestControlPlane(await pg.newDatabase(), { httpAllowedHosts: ['fw.internal'] });
  try {
    assert.equal(cp.cp.security, 'loopback-trust');
    const port = cp.httpPort;
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'fw.internal'])
      assert.equal((await httpsJson(port, 'GET', '/v1/rules', { host })).status, 200, host);
    const evil = await httpsJson(port, 'POST', '/manage-ip', { host: `evil.example:${port}`, body: { action: 'block', ip: '192.0.2.1' } });
    assert.equal(evil.status, 421);
    assert.equal(evil.body.reason, 'HOST_NOT_ALLOWED');
    assert.equal((await httpsJson(port, 'GET', '/metrics', { host: 'rebind.attacker.example' })).status, 421, 'every route, reads too');
    const list = await httpsJson(port, 'GET', '/v1/rules', { host: `localhost:${port}` });
    assert.equal(list.body.rules?.length ?? 0, 0, 'the refused block stored nothing');

    const bad = await httpsJson(port, 'GET', '/v1/rules', { token: generateToken() });
    assert.equal(bad.status, 401, 'an unknown token is refused even on loopback');
    const withBad = connectClients(cp.target, { token: 'fwt_nope' });
    const e = await callError(unaryCall(withBad.rules, 'listRules', ListRulesRequest.fromPartial({})));
    assert.equal(e.code, status.UNAUTHENTICATED);
    withBad.close();
    const m = await httpsJson(port, 'GET', '/metrics');
    assert.match(String(m.body), /fleetwall_auth_failures_total\{reason="HOST_NOT_ALLOWED"[^}]*\} 2/);
  } finally {
    await cp.stop();
  }
});

test('--insecure-no-auth: a warning at every start, shown on /healthz, any caller is an admin', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const cp = await startControlPlane(
    testConfig(await pg.newDatabase(), { insecureNoAuth: true, grpcHost: '0.0.0.0', httpHost: '0.0.0.0' }),
    pino({ level: 'info' }, sink),
  );
  try {
    assert.equal(cp.security, 'insecure');
    assert.ok(
      lines.some((l) => /"level":40/.test(l) && /INSECURE/.test(l)),
      'a warning in the log',
    );
    const h = await httpsJson(cp.httpPort, 'GET', '/healthz');
    assert.equal(h.body.security, 'insecure');
    assert.match(h.body.warning, /no TLS, no authentication/);
    const r = await httpsJson(cp.httpPort, 'POST', '/manage-ip', { body: { action: 'block', ip: '192.0.2.77' } });
    assert.equal(r.status, 200);
    assert.match(r.body.rule.createdBy, /^insecure:127\.0\.0\.1$/, 'the peer address stands in for an identity');
  } finally {
    await cp.stop();
  }
});

test('penalty box: free failures, then doubling hold-backs up to the cap; bounded peers; forgetting after the window', () => {
  let now = 0;
  const box = new PenaltyBox({ free: 3, baseMs: 100, maxMs: 1000, windowMs: 60_000, maxPeers: 2, maxDelayed: 10 }, () => now);
  assert.deepEqual(
    Array.from({ length: 9 }, () => box.fail('a')),
    [0, 0, 0, 100, 200, 400, 800, 1000, 1000],
  );
  assert.equal(box.fail('b'), 0, 'another peer is not slowed');
  box.fail('c');
  assert.equal(box.size, 2, 'at most maxPeers remembered');
  assert.equal(box.fail('a'), 0, 'the oldest peer was forgotten first');
  now += 61_000;
  box.fail('c');
  box.fail('c');
  assert.equal(box.fail('c'), 0, 'failures older than the window are forgotten');
  const off = new PenaltyBox({ free: 0, baseMs: 100, maxMs: 0, windowMs: 1, maxPeers: 1, maxDelayed: 1 });
  assert.equal(off.fail('x'), 0, 'maxMs 0: never held back');
});

test('token verifier: calls for one token share one look-up, and a token in use is looked up again before its entry expires', async () => {
  let now = 1_000_000;
  const token = generateToken();
  const row: TokenRow = {
    id: 9n,
    name: 'busy',
    role: 'operator',
    created_by: 'test',
    create_time: new Date(0),
    expire_time: null,
    revoke_time: null,
    revoked_by: '',
  };
  let revoked = false;
  const pending: (() => void)[] = [];
  let lookups = 0;
  const store = {
    bySecret: (h: Buffer) =>
      new Promise<TokenRow | undefined>((resolve) => {
        lookups++;
        // The row as the store has it when it answers.
        pending.push(() => resolve(h.equals(hashToken(token)) ? { ...row, revoke_time: revoked ? new Date(now) : null } : undefined));
      }),
  };
  const settle = async () => {
    for (const r of pending.splice(0)) r();
    await new Promise((r) => setImmediate(r));
  };
  const v = new TokenVerifier(store, 500, () => now);
  const calls = Array.from({ length: 16 }, () => v.verify(token));
  assert.equal(lookups, 1, '16 calls for an uncached token: one look-up');
  await settle();
  for (const c of await Promise.all(calls)) assert.equal(c.ok, true);

  now += 249;
  assert.equal(v.cached(token)?.ok, true);
  assert.equal(lookups, 1, 'younger than half the TTL: no look-up');
  now += 2;
  assert.equal(v.cached(token)?.ok, true, 'past half the TTL the cache still answers at once');
  assert.equal(v.cached(token)?.ok, true);
  assert.equal(lookups, 2, '... and one look-up goes out in the background, not one per call');
  revoked = true;
  await settle();
  now += 300;
  assert.deepEqual(
    v.cached(token),
    { ok: false, reason: 'TOKEN_REVOKED', tokenId: 9n },
    'the background look-up replaced the entry: a revocation it saw is answered from the cache',
  );

  // Past the TTL with nothing in the background: the next call waits for the store (the 1 s bound holds).
  revoked = false;
  const w = new TokenVerifier(store, 500, () => now);
  const first = w.verify(token);
  await settle();
  assert.equal((await first).ok, true);
  now += 501;
  assert.equal(w.cached(token), undefined, 'older than the TTL: never answered from the cache');
  const late = [w.verify(token), w.verify(token)];
  assert.equal(lookups, 4, 'the calls past the TTL share one look-up');
  await settle();
  for (const c of await Promise.all(late)) assert.equal(c.ok, true);
});

test('token verifier: a revocation without NOTIFY is seen once the cache entry is older than the TTL', async () => {
  let now = 1_000_000;
  const token = generateToken();
  const row: { -readonly [K in keyof TokenRow]: TokenRow[K] } = {
    id: 7n,
    name: 'ci',
    role: 'operator',
    created_by: 'test',
    create_time: new Date(0),
    expire_time: null,
    revoke_time: null,
    revoked_by: '',
  };
  let lookups = 0;
  const store = {
    bySecret: async (h: Buffer) => {
      lookups++;
      return h.equals(hashToken(token)) ? { ...row } : undefined;
    },
  };
  const v = new TokenVerifier(store, 500, () => now);
  assert.deepEqual(await v.verify(token), { ok: true, principal: { id: 'token:7/ci', kind: 'token', role: 'operator', tokenId: 7n } });
  assert.equal(v.cached(token)?.ok, true, 'cached: no look-up');
  assert.equal(lookups, 1);
  row.revoke_time = new Date(now);
  now += 499;
  assert.equal(v.cached(token)?.ok, true, 'within the TTL the cache answers');
  now += 2;
  assert.equal(v.cached(token), undefined, 'past the TTL: ask the store');
  assert.deepEqual(await v.verify(token), { ok: false, reason: 'TOKEN_REVOKED', tokenId: 7n });
  const unknown = generateToken();
  assert.equal((await v.verify(unknown)).ok, false);
  assert.equal((await v.verify(unknown)).ok, false);
  assert.equal(lookups, 3, 'an unknown token is looked up once');
  assert.deepEqual(v.cached('garbage'), { ok: false, reason: 'TOKEN_UNKNOWN' }, 'malformed: no look-up at all');
  row.revoke_time = null;
  row.expire_time = new Date(now + 10);
  const other = new TokenVerifier(store, 500, () => now);
  assert.equal((await other.verify(token)).ok, true);
  now += 11;
  assert.deepEqual(other.cached(token), { ok: false, reason: 'TOKEN_EXPIRED', tokenId: 7n }, 'expiry needs no look-up');
});
