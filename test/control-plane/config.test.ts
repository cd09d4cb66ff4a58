import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig, parseDurationMs } from '../../control-plane/src/config.js';

test('defaults: gRPC 50051, HTTP 8080, embedded Postgres under .fleetwall', () => {
  const { config } = parseConfig([], {});
  assert.equal(config.grpcPort, 50051);
  assert.equal(config.httpPort, 8080);
  assert.equal(config.databaseUrl, undefined);
  assert.match(config.dataDir, /\/\.fleetwall$/);
  assert.ok(Object.isFrozen(config));
});

test('environment, then flags override', () => {
  const { config } = parseConfig(['--grpc-port', '0', '--http-port=9', '--change-retention', '5m'], {
    FLEETWALL_GRPC_PORT: '6000',
    FLEETWALL_HTTP_PORT: '7000',
    DATABASE_URL: 'postgres://u:p@db/x',
    FLEETWALL_PING_INTERVAL: '250ms',
    FLEETWALL_DATA_DIR: '/var/lib/fw',
  });
  assert.equal(config.grpcPort, 0);
  assert.equal(config.httpPort, 9);
  assert.equal(config.databaseUrl, 'postgres://u:p@db/x');
  assert.equal(config.changeRetentionMs, 300_000);
  assert.equal(config.pingIntervalMs, 250);
  assert.equal(config.dataDir, '/var/lib/fw');
});

test('bad settings name the setting and the fix', () => {
  assert.throws(
    () => parseConfig([], { FLEETWALL_GRPC_PORT: '70000' }),
    (e: unknown) => e instanceof ConfigError && /FLEETWALL_GRPC_PORT.*0\.\.65535/.test(e.message),
  );
  assert.throws(
    () => parseConfig(['--ping-interval', '10'], {}),
    (e: unknown) => e instanceof ConfigError && /--ping-interval.*unit/.test(e.message),
  );
  assert.throws(
    () => parseConfig(['--no-such-flag', '1'], {}),
    (e: unknown) => e instanceof ConfigError && /unknown flag --no-such-flag/.test(e.message),
  );
  assert.throws(() => parseConfig([], { DATABASE_URL: 'mysql://x' }), /postgres:\/\//);
  assert.throws(() => parseConfig([], { FLEETWALL_EXPIRY_SWEEP_INTERVAL: '2s' }), /at most 900ms/);
  assert.throws(() => parseConfig(['--max-batch'], {}), /needs a value/);
});

test('durations', () => {
  assert.equal(parseDurationMs('250ms'), 250);
  assert.equal(parseDurationMs('1.5s'), 1500);
  assert.equal(parseDurationMs('24h'), 86_400_000);
  assert.equal(parseDurationMs('7d'), 604_800_000);
  assert.equal(parseDurationMs('10'), undefined);
});

test('--help is reported, not an error', () => {
  assert.equal(parseConfig(['--help'], {}).help, true);
});

test('main(): a bad flag exits 2 with the reason, --help prints the flags', async () => {
  const { main } = await import('../../control-plane/src/main.js');
  const writes: string[] = [];
  const errWrite = process.stderr.write.bind(process.stderr);
  const outWrite = process.stdout.write.bind(process.stdout);
  process.stderr.write = ((s: string) => writes.push(String(s)) > 0) as typeof process.stderr.write;
  process.stdout.write = ((s: string) => writes.push(String(s)) > 0) as typeof process.stdout.write;
  const saved = process.exitCode;
  try {
    await main(['--grpc-port', 'seventy']);
    assert.equal(process.exitCode, 2);
    assert.match(writes.join(''), /--grpc-port="seventy": expected a port number/);
    process.exitCode = saved;
    writes.length = 0;
    await main(['--help']);
    assert.match(writes.join(''), /--change-retention .*FLEETWALL_CHANGE_RETENTION, default 24h/);
    assert.equal(process.exitCode, saved);
  } finally {
    process.stderr.write = errWrite;
    process.stdout.write = outWrite;
    process.exitCode = saved;
  }
});
