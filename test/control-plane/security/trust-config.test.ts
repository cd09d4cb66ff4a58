// The trust settings of control-plane/src/config.ts: loopback binds by
// default, bare boolean flags, lists, and the combinations that are refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../../control-plane/src/config.js';
import { securityMode } from '../../../control-plane/src/auth/security-mode.js';

test('defaults: both ports on loopback, no TLS: loopback-trust', () => {
  const { config } = parseConfig([], {});
  assert.equal(config.grpcHost, '127.0.0.1');
  assert.equal(config.httpHost, '127.0.0.1');
  assert.equal(config.tls, false);
  assert.equal(config.insecureNoAuth, false);
  assert.deepEqual(config.tlsSans, []);
  assert.equal(config.authCacheTtlMs, 500);
  assert.equal(securityMode(config), 'loopback-trust');
});

test('--tls alone, --tls=false, env booleans, comma lists', () => {
  assert.equal(parseConfig(['--tls', '--grpc-port', '0'], {}).config.tls, true, 'a bare --tls does not eat the next flag');
  assert.equal(parseConfig(['--tls', '--grpc-port', '0'], {}).config.grpcPort, 0);
  assert.equal(parseConfig(['--tls=false'], { FLEETWALL_TLS: 'true' }).config.tls, false, 'the flag wins');
  assert.equal(parseConfig([], { FLEETWALL_INSECURE_NO_AUTH: '1', FLEETWALL_GRPC_HOST: '0.0.0.0' }).config.insecureNoAuth, true);
  const { config } = parseConfig(['--tls-san', 'cp.example.com, 192.0.2.7,,'], { FLEETWALL_HTTP_ALLOWED_HOSTS: 'fw.lan' });
  assert.deepEqual(config.tlsSans, ['cp.example.com', '192.0.2.7']);
  assert.deepEqual(config.httpAllowedHosts, ['fw.lan']);
  assert.equal(securityMode(parseConfig(['--grpc-host', '0.0.0.0'], {}).config), 'tls');
});

test('refused: a certificate without its key, a CA without a certificate, insecure with TLS, a cache over 1 s', () => {
  const refused = (argv: string[], env: Record<string, string>, re: RegExp) =>
    assert.throws(
      () => parseConfig(argv, env),
      (e: unknown) => e instanceof ConfigError && re.test(e.message),
    );
  refused(['--tls-cert', '/x.crt'], {}, /go together/);
  refused(['--tls-ca', '/ca.crt'], {}, /--tls-cert and --tls-key with it/);
  refused(['--insecure-no-auth', '--tls'], {}, /cannot go with --tls/);
  refused([], { FLEETWALL_AUTH_CACHE_TTL: '2s' }, /at most 1000ms/);
  refused(['--tls=maybe'], {}, /true or false/);
});
