// Agent configuration: env and flags, flags win, validated once, frozen, clear errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, parseDurationMs } from '../../node-agent/src/config.js';

test('defaults, env, and flags overriding env', () => {
  const c = loadConfig(['--interfaces', 'eth0'], {});
  assert.deepEqual(c.controlPlanes, ['localhost:50051']);
  assert.equal(c.pinPath, '/sys/fs/bpf/fleetwall');
  assert.equal(c.counterIntervalMs, 1000);
  assert.equal(c.defaultAction, 'pass');
  assert.ok(c.nodeName.length > 0, 'hostname by default');
  assert.ok(Object.isFrozen(c));
  const env = {
    FLEETWALL_CONTROL_PLANE: 'cp1:50051,unix:///run/cp.sock',
    FLEETWALL_NODE_NAME: 'edge-1',
    FLEETWALL_LABELS: 'zone=eu, role=edge',
    FLEETWALL_INTERFACES: 'eth0,eth1',
    FLEETWALL_DEFAULT_ACTION: 'drop',
    FLEETWALL_COUNTER_INTERVAL: '500ms',
    FLEETWALL_HTTP_ADDR: '[::1]:9000',
  };
  const e = loadConfig([], env);
  assert.deepEqual(e.controlPlanes, ['cp1:50051', 'unix:/run/cp.sock']);
  assert.equal(e.nodeName, 'edge-1');
  assert.deepEqual(e.labels, { zone: 'eu', role: 'edge' });
  assert.deepEqual(e.interfaces, ['eth0', 'eth1']);
  assert.equal(e.defaultAction, 'drop');
  assert.equal(e.counterIntervalMs, 500);
  assert.equal(e.httpAddr, '[::1]:9000');
  const f = loadConfig(['--node-name=edge-2', '--counter-interval', '2s', '--http-addr', 'off'], env);
  assert.equal(f.nodeName, 'edge-2');
  assert.equal(f.counterIntervalMs, 2000);
  assert.equal(f.httpAddr, '');
});

test('bad input is refused with the flag, the variable and how to fix it', () => {
  const bad: [string[], Record<string, string>, RegExp][] = [
    [[], {}, /--interfaces \/ FLEETWALL_INTERFACES: name at least one interface/],
    [
      ['--interfaces', 'eth0', '--default-action', 'block'],
      {},
      /--default-action \/ FLEETWALL_DEFAULT_ACTION: "block" must be pass or drop/,
    ],
    [['--interfaces', 'eth0'], { FLEETWALL_LABELS: 'zone' }, /FLEETWALL_LABELS: "zone" is not key=value/],
    [['--interfaces', 'eth0', '--control-plane', 'nohost'], {}, /"nohost" is not host:port/],
    [['--interfaces', 'eth0', '--counter-interval', 'soon'], {}, /"soon" is not a duration/],
    [['--interfaces', 'eth0', '--pin-path', 'relative/dir'], {}, /must be an absolute path/],
    [['--interfaces', 'eth0', '--bogus', '1'], {}, /unknown flag --bogus/],
    [
      ['--interfaces', 'eth0', '--replace-foreign-xdp', 'yes'],
      {},
      /--replace-foreign-xdp \/ FLEETWALL_REPLACE_FOREIGN_XDP: "yes" must be true or false/,
    ],
    [['--interfaces', 'eth0,eth0'], {}, /listed twice/],
    [['--interfaces', 'eth0', '--reconnect-min', '5s', '--reconnect-max', '1s'], {}, /must not be below/],
    [['--interfaces', 'eth0', '--capacity-prefixes', '0'], {}, /out of range/],
    [['--interfaces', 'eth0', '--capacity-slots', String(2 ** 24 + 1)], {}, /out of range/], // the /24 index word's 24-bit slot field
  ];
  for (const [argv, env, re] of bad)
    assert.throws(
      () => loadConfig(argv, env),
      (e: unknown) => e instanceof ConfigError && re.test(e.message),
      `${argv.join(' ')} ${JSON.stringify(env)}`,
    );
  assert.equal(parseDurationMs('1.5s', 'x'), 1500);
  assert.throws(() => parseDurationMs('2', 'x'), /not a duration/, 'a unit is required, as for the control plane');
  assert.equal(parseDurationMs('1h30m', 'x'), 5_400_000);
});

test('replacing a foreign XDP program is off unless asked for', () => {
  assert.equal(loadConfig(['--interfaces', 'eth0'], {}).replaceForeignXdp, false);
  assert.equal(loadConfig(['--interfaces', 'eth0', '--replace-foreign-xdp', 'true'], {}).replaceForeignXdp, true);
  assert.equal(loadConfig(['--interfaces', 'eth0'], { FLEETWALL_REPLACE_FOREIGN_XDP: 'true' }).replaceForeignXdp, true);
});
