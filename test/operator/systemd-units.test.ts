// deploy/systemd/ against the code and against systemd itself: the units pass
// `systemd-analyze verify` without a warning and rate "OK" or better in
// `systemd-analyze security --offline`; they start real fleetwall commands;
// their state directories are where the services keep their state; the
// environment they set and the examples in their comments parse with each
// service's config.ts (the agent's example enrolls over TLS, the control
// plane's binds beyond loopback and so serves TLS); the agent's sandbox keeps
// bpffs writable (no ProtectKernelTunables=, which would make it read-only)
// and no syscall filter without bpf(). That the sandboxed processes really
// run is systemd-sandbox.kernel.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseConfig } from '../../control-plane/src/config.js';
import { securityMode } from '../../control-plane/src/auth/security-mode.js';
import { loadConfig as loadAgentConfig } from '../../node-agent/src/config.js';
import { wantsTls } from '../../node-agent/src/identity/node-identity.js';
import { readUnit } from '../support/systemd-unit.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const AGENT = resolve(ROOT, 'deploy/systemd/fleetwall-agent.service');
const CP = resolve(ROOT, 'deploy/systemd/fleetwall-control-plane.service');
const agent = readUnit(AGENT);
const cp = readUnit(CP);
const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const systemdVersion = analyze.status === 0 ? Number(/systemd (\d+)/.exec(analyze.stdout)?.[1] ?? 0) : 0;

test('systemd-analyze verify: no warning for either unit', {
  skip: systemdVersion === 0 && 'systemd-analyze is not installed',
}, async () => {
  for (const unit of [AGENT, CP]) {
    const { stdout, stderr } = await run('systemd-analyze', ['verify', unit]);
    assert.equal(`${stdout}${stderr}`.trim(), '', unit);
  }
});

test('systemd-analyze security: both units rate OK or better', {
  skip: systemdVersion < 250 && 'systemd-analyze security --offline needs systemd 250',
}, async () => {
  for (const unit of [AGENT, CP]) {
    const { stdout } = await run('systemd-analyze', ['security', '--offline=yes', '--no-pager', unit]);
    const m = /Overall exposure level for \S+: ([\d.]+) (\w+)/.exec(stdout);
    assert.ok(m, stdout.slice(-400));
    assert.ok(Number(m[1]) < 5, `${unit}: exposure ${m[1]} ${m[2]}`);
  }
});

test('the units start real fleetwall commands, with their state where the services keep it', async () => {
  for (const [unit, command] of [
    [agent, 'agent'],
    [cp, 'control-plane'],
  ] as const) {
    assert.equal(unit.get('Service', 'ExecStart'), `/usr/bin/env fleetwall ${command}`);
    const help = spawnSync(process.execPath, [resolve(ROOT, 'bin/fleetwall.mjs'), command, '--help'], { encoding: 'utf8' });
    assert.equal(help.status, 0, `fleetwall ${command} --help: ${help.stderr}`);
    assert.equal(unit.get('Service', 'ProtectSystem'), 'strict', 'a read-only file system');
    assert.equal(unit.get('Service', 'NoNewPrivileges'), 'yes');
    assert.equal(unit.get('Service', 'PrivateTmp'), 'yes');
  }
  // The agent: its identity in its state directory (also the agent's own default), 0700.
  const agentState = `/var/lib/${agent.get('Service', 'StateDirectory')}`;
  assert.equal(agent.env().FLEETWALL_IDENTITY_DIR, agentState);
  assert.equal(loadAgentConfig(['--interfaces', 'eth0'], {}).identityDir, agentState);
  assert.equal(agent.get('Service', 'StateDirectoryMode'), '0700');
  // The control plane: its data dir (embedded Postgres, PKI, admin token) is its state directory.
  const cpState = `/var/lib/${cp.get('Service', 'StateDirectory')}`;
  assert.equal(cp.env().FLEETWALL_DATA_DIR, cpState);
  assert.equal(parseConfig([], cp.env()).config.dataDir, cpState);
  assert.equal(cp.get('Service', 'DynamicUser'), 'yes', 'not root');
});

test("the agent's sandbox leaves what it needs: bpffs writable, bpf(), its capabilities only", () => {
  const rw = agent.all('Service', 'ReadWritePaths');
  const pinPath = loadAgentConfig(['--interfaces', 'eth0'], {}).pinPath;
  assert.ok(
    rw.some((p) => pinPath === p || pinPath.startsWith(`${p}/`)),
    `the default pin path ${pinPath} is writable`,
  );
  assert.equal(agent.get('Service', 'ProtectKernelTunables'), undefined, 'it would mount /sys/fs/bpf read-only');
  const filter = agent.all('Service', 'SystemCallFilter');
  assert.ok(filter.length === 0 || filter.includes('bpf'), 'a syscall filter must allow bpf()');
  const caps = agent.all('Service', 'CapabilityBoundingSet');
  assert.deepEqual([...caps].sort(), ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON']);
  assert.equal(agent.get('Service', 'User'), undefined, 'root (bpffs is root-owned), held to those capabilities');
  assert.deepEqual(cp.all('Service', 'CapabilityBoundingSet'), [], 'the control plane: none');
  assert.ok(cp.has('Service', 'CapabilityBoundingSet'), 'set, and empty');
});

test("the units' environment and their commented examples parse with each service's config", () => {
  const agentEnv = { ...agent.commentedEnv(), ...agent.env() };
  for (const k of ['FLEETWALL_CONTROL_PLANE', 'FLEETWALL_INTERFACES', 'FLEETWALL_JOIN_TOKEN', 'FLEETWALL_CA_CERT_HASH'])
    assert.ok(k in agentEnv, `the agent example shows ${k}`);
  const a = loadAgentConfig([], agentEnv);
  assert.equal(a.controlPlanes.length, 2);
  assert.ok(wantsTls(a), 'enrolls and dials TLS');
  assert.equal(agentEnv.FLEETWALL_LABELS, undefined, 'labels come with the join token');
  const cpEnv = { ...cp.commentedEnv(), ...cp.env() };
  const { config } = parseConfig([], cpEnv);
  assert.equal(securityMode(config), 'tls', 'binding beyond loopback turns TLS and tokens on');
  assert.ok(config.databasePasswordFile, 'the database password from a file');
  assert.equal(new URL(config.databaseUrl!).password, '', 'not in the URL');
  assert.deepEqual(config.tlsSans, ['cp.internal']);
});
