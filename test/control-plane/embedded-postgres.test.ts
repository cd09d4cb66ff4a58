// Without DATABASE_URL the control plane runs an embedded Postgres under
// FLEETWALL_DATA_DIR, keeps it across restarts, stops it on SIGTERM, and
// adopts a server a killed (-9) process left running - only a real one: a
// stale postmaster.pid naming another process is never signalled. The
// superuser password is never readable by other users (issue 16, finding 8).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { isPostmasterOf, startEmbeddedPostgres } from '../../control-plane/src/store/embedded-postgres.js';
import { connectClients, startChildControlPlane } from '../support/control-plane.js';
import { eventually } from '../support/eventually.js';
import { rulesApi } from '../support/rule-fixtures.js';

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetwall-data-'));
  chmodSync(dir, 0o755);
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function postmasterPid(): number | undefined {
  const f = join(dir, 'postgres', 'postmaster.pid');
  return existsSync(f) ? Number(readFileSync(f, 'utf8').split('\n')[0]) : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function withClients<T>(target: string, fn: (api: ReturnType<typeof rulesApi>) => Promise<T>): Promise<T> {
  const c = connectClients(target);
  try {
    return await fn(rulesApi(c.rules));
  } finally {
    c.close();
  }
}

test('data kept across restarts; SIGTERM stops Postgres; a server left by kill -9 is adopted', async () => {
  const env = { FLEETWALL_DATA_DIR: dir };
  const first = await startChildControlPlane(undefined, env);
  const made = await withClients(first.target, (api) =>
    api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, comment: 'kept' } }),
  );
  const pid1 = postmasterPid();
  assert.ok(pid1 && alive(pid1), 'an embedded Postgres runs');
  assert.equal(await first.stop(), 0, 'clean exit on SIGTERM');
  await eventually(() => !alive(pid1!), 'Postgres to stop with the control plane');

  const second = await startChildControlPlane(undefined, env);
  const got = await withClients(second.target, (api) => api.get(made.rule!.id));
  assert.equal(got.rule!.comment, 'kept', 'the data directory was reused, not re-initialised');
  const pid2 = postmasterPid()!;
  await second.kill();
  assert.ok(alive(pid2), 'kill -9 of the control plane leaves its Postgres running');

  const third = await startChildControlPlane(undefined, env);
  try {
    const again = await withClients(third.target, (api) => api.list({ text: 'kept' }));
    assert.equal(again.rules.length, 1);
    assert.equal(postmasterPid(), pid2, 'the running server was adopted');
  } finally {
    assert.equal(await third.stop(), 0);
  }
  await eventually(() => !alive(pid2), 'the adopted Postgres to stop');
});

test('a stale postmaster.pid naming an unrelated live process: not adopted, never signalled, removed; the cluster starts', async () => {
  const data = mkdtempSync(join(tmpdir(), 'fleetwall-stale-'));
  chmodSync(data, 0o755);
  const logger = pino({ level: 'silent' });
  const bystander = spawn('sleep', ['120'], { stdio: 'ignore' });
  try {
    const first = await startEmbeddedPostgres({ dataDir: data, port: 0, logger, settings: { fsync: 'off' } });
    const pgData = join(data, 'postgres');
    const real = Number(readFileSync(join(pgData, 'postmaster.pid'), 'utf8').split('\n')[0]);
    assert.equal(await isPostmasterOf(real, pgData), true, 'the running postmaster is recognised');
    await first.stop();
    // After a reboot, say: the file is back, naming a PID another process now has.
    writeFileSync(join(pgData, 'postmaster.pid'), `${bystander.pid}\n${pgData}\n1700000000\n${first.port}\n\n127.0.0.1\n`);
    assert.equal(await isPostmasterOf(bystander.pid!, pgData), false);
    const second = await startEmbeddedPostgres({ dataDir: data, port: 0, logger, settings: { fsync: 'off' } });
    try {
      const pid = Number(readFileSync(join(pgData, 'postmaster.pid'), 'utf8').split('\n')[0]);
      assert.notEqual(pid, bystander.pid, 'a new server, not an adopted one');
      assert.ok(alive(bystander.pid!), 'the unrelated process was not signalled');
    } finally {
      await second.stop();
    }
    assert.ok(alive(bystander.pid!), 'nor by the stop');
  } finally {
    bystander.kill('SIGKILL');
    rmSync(data, { recursive: true, force: true });
  }
});

test('the superuser password is never in a file another user can read, not even during the first start', async () => {
  const data = mkdtempSync(join(tmpdir(), 'fleetwall-pw-'));
  chmodSync(data, 0o755);
  // The temp directory of this start is one of our own (os.tmpdir() follows TMPDIR): other
  // processes on this machine write their own files to the shared one, anything here is ours.
  const temp = mkdtempSync(join(tmpdir(), 'fleetwall-tmp-'));
  const savedTmp = process.env.TMPDIR;
  const inTemp: string[] = [];
  const privateDirs: string[] = [];
  const tw = watch(temp, (_e, name) => name && inTemp.push(name));
  const own = watch(data, (_e, name) => name?.startsWith('.initdb-') && privateDirs.push(join(data, name)));
  try {
    process.env.TMPDIR = temp;
    assert.equal(tmpdir(), temp);
    const pg = await startEmbeddedPostgres({ dataDir: data, port: 0, logger: pino({ level: 'silent' }), settings: { fsync: 'off' } });
    await pg.stop();
  } finally {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    tw.close();
    own.close();
  }
  try {
    assert.deepEqual(
      inTemp.filter((f) => /pg-password/.test(f)),
      [],
      'no password file in the temp directory (embedded-postgres initialise() put one there, world-readable)',
    );
    assert.ok(privateDirs.length > 0, 'initdb read the password from a private directory under the data directory');
    for (const d of new Set(privateDirs)) assert.ok(!existsSync(d), `${d} removed after initdb`);
    assert.equal(statSync(join(data, 'postgres.password')).mode & 0o077, 0, 'the kept password file is private');
  } finally {
    rmSync(data, { recursive: true, force: true });
    rmSync(temp, { recursive: true, force: true });
  }
});
