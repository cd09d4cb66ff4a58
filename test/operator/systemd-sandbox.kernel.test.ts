// The shipped systemd units can start what they start, in their sandbox (no
// systemd runs here: test/support/systemd-unit.ts reproduces a unit's file
// system, user and capability walls with a mount namespace and setpriv).
//
// The agent, as root with only the unit's capabilities, no new privileges and
// a read-only file system but bpffs and its state directory: it enrolls over
// mutual TLS, attaches, enforces a rule made through the API on real packets,
// and after a kill -9 starts again from its pins and its certificate on disk.
// The control plane, as an unprivileged user with no capabilities and a
// read-only file system but its state directory: it runs its embedded
// Postgres, makes its PKI and first admin token there, and the CLI on the host
// finds and uses them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createRule, withE2E } from '../support/agent-e2e-rig.js';
import { startChildControlPlane } from '../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { readUnit, sandboxArgv, type Unit } from '../support/systemd-unit.js';
import { ping } from '../support/traffic.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const agentUnit = readUnit(resolve(ROOT, 'deploy/systemd/fleetwall-agent.service'));
const cpUnit = readUnit(resolve(ROOT, 'deploy/systemd/fleetwall-control-plane.service'));
const NOBODY = 65534;

/** Capability names of a CapBnd/CapEff mask from /proc/<pid>/status. */
async function capNames(mask: string): Promise<string[]> {
  const { stdout } = await run('capsh', [`--decode=${mask}`]);
  const list = stdout.trim().split('=')[1] ?? '';
  return list === '' ? [] : list.split(',').sort();
}

/** What /proc says of a process: its bounding set, no_new_privs, and whether / and /etc are read-only for it. */
async function walls(pid: number): Promise<{ bounding: string[]; noNewPrivs: boolean; uid: number; rootRo: boolean }> {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => new RegExp(`^${k}:\\s*(\\S+)`, 'm').exec(status)![1]!;
  const root = readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === '/');
  return {
    bounding: await capNames(field('CapBnd')),
    noNewPrivs: field('NoNewPrivs') === '1',
    uid: Number(field('Uid')),
    rootRo: root !== undefined && root.split(' ')[5]!.split(',').includes('ro'),
  };
}

const unitCaps = (u: Unit) => u.all('Service', 'CapabilityBoundingSet').map((c) => c.toLowerCase());

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

test("the agent in its unit's sandbox: enrolls, enforces on real packets, restarts from its pins", async () => {
  const staging = mkdtempSync(join(tmpdir(), 'fwsandbox-'));
  try {
    await withE2E(
      pg,
      async ({ bed, cp, agent }) => {
        const w = await walls(agent.pid!);
        assert.deepEqual(w.bounding, unitCaps(agentUnit).sort(), "only the unit's capabilities");
        assert.equal(w.uid, 0);
        assert.ok(w.noNewPrivs);
        assert.ok(w.rootRo, '/ is read-only for it');
        assert.equal((await agent.health()).tls, true, 'enrolled, mutual TLS');

        const src = bed.a.v4Extra[0]!;
        const { revision } = await createRule(cp, `${src}/32`);
        await agent.waitHealth('rule applied', (h) => BigInt(h.appliedRevision) >= revision);
        assert.deepEqual(await ping(bed, { from: 'a', src, dst: bed.b.v4, count: 4 }), { sent: 4, received: 0 });
        assert.equal((await ping(bed, { from: 'a', src: bed.a.v4Extra[1]!, dst: bed.b.v4, count: 2 })).received, 2);

        // kill -9, and the same unit starts it again: pins and the certificate on disk, no new enrollment.
        await agent.kill9();
        assert.equal((await ping(bed, { from: 'a', src, dst: bed.b.v4, count: 2 })).received, 0, 'the kernel keeps enforcing');
        await agent.restart();
        const h = await agent.waitHealth('resumed', (x) => x.syncState === 'in_sync');
        assert.equal(h.tls, true);
        assert.equal(h.lastSyncMode, 'resume', 'from its pinned revision');
        assert.ok((await walls(agent.pid!)).rootRo);
        const r2 = await createRule(cp, `${bed.a.v4Extra[1]}/32`);
        await agent.waitHealth('second rule applied', (x) => BigInt(x.appliedRevision) >= r2.revision);
        assert.equal((await ping(bed, { from: 'a', src: bed.a.v4Extra[1]!, dst: bed.b.v4, count: 2 })).received, 0);
      },
      {
        // Its own files (ready file, HTTP socket, identity: the state directory's stand-in) writable; the
        // Unix socket that links it to the control plane visible in its private /tmp.
        agentWrap: (a) =>
          sandboxArgv(agentUnit, { writable: [a.dir], visible: [dirname(a.opts.controlPlane.replace(/^unix:/, ''))], staging }),
      },
    );
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
});

test("the control plane in its unit's sandbox, as a user of its own: embedded Postgres, PKI and admin token in its state directory, the CLI on the host uses them", async () => {
  // StateDirectory='s stand-in, owned by the unit's user with the unit's mode; parents traversable as on /var/lib.
  const top = mkdtempSync(join(tmpdir(), 'fwcpunit-'));
  chmodSync(top, 0o755);
  const state = join(top, 'state');
  mkdirSync(state, { mode: Number.parseInt(cpUnit.get('Service', 'StateDirectoryMode')!, 8) });
  chownSync(state, NOBODY, NOBODY);
  const staging = join(top, 'staging');
  mkdirSync(staging);
  const unitEnv = cpUnit.env();
  assert.equal(unitEnv.FLEETWALL_DATA_DIR, `/var/lib/${cpUnit.get('Service', 'StateDirectory')}`, 'its data in its state directory');
  const [exec, ...args] = cpUnit.get('Service', 'ExecStart')!.split(/\s+/);
  assert.deepEqual([exec, ...args], ['/usr/bin/env', 'fleetwall', 'control-plane']);
  let cp: Awaited<ReturnType<typeof startChildControlPlane>> | undefined;
  try {
    cp = await startChildControlPlane(
      undefined,
      // The unit's environment (its data dir moved to the stand-in); TLS on a loopback bind, as a bind beyond it would.
      { ...unitEnv, FLEETWALL_DATA_DIR: state, FLEETWALL_TLS: 'true' },
      {
        command: [resolve(ROOT, 'bin/fleetwall.mjs'), ...args.slice(1)],
        wrap: sandboxArgv(cpUnit, { writable: [state], staging, user: String(NOBODY) }),
        unsetEnv: ['HOME'],
      },
    );
    const w = await walls(cp.pid);
    assert.equal(w.uid, NOBODY, 'not root');
    assert.deepEqual(w.bounding, [], 'no capabilities');
    assert.ok(w.noNewPrivs);
    assert.ok(w.rootRo, '/ is read-only for it');

    // What it made, as its user: the cluster, the PKI (keys 0600), the first admin token (0600).
    for (const [f, mode] of [
      ['pki/ca.crt', 0o644],
      ['pki/ca.key', 0o600],
      ['admin.token', 0o600],
      ['control-plane.json', 0o644],
    ] as const) {
      const st = statSync(join(state, f));
      assert.equal(st.uid, NOBODY, `${f} is the unit user's`);
      assert.equal(st.mode & 0o777, mode, f);
    }
    assert.equal(statSync(join(state, 'postgres')).uid, NOBODY, 'the embedded cluster in the state directory');

    // The CLI on the host (root) finds the CA and the admin token in the state directory by itself.
    const cli = (...a: string[]) =>
      run(process.execPath, [resolve(ROOT, 'bin/fleetwall.mjs'), '--server', `localhost:${cp!.grpcPort}`, ...a], {
        env: { ...process.env, FLEETWALL_DATA_DIR: state },
      });
    await cli('block', '203.0.113.9', '--comment', 'systemd sandbox');
    const { stdout } = await cli('rules', 'ls', '--json');
    assert.match(stdout, /203\.0\.113\.9\/32/);
    assert.equal(await cp.stop(), 0, 'a clean stop, Postgres included');
    cp = undefined;
  } finally {
    await cp?.kill();
    rmSync(top, { recursive: true, force: true });
  }
});
