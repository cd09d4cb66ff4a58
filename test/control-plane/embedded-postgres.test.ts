// Without DATABASE_URL the control plane runs an embedded Postgres under
// FLEETWALL_DATA_DIR, keeps it across restarts, stops it on SIGTERM, and
// adopts a server a killed (-9) process left running.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
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
