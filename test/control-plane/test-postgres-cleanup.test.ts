// A test file ended by a signal (Ctrl-C to the group, or the runner's SIGTERM
// past --test-timeout, when no `finally` runs) does not leave its embedded
// Postgres running or its directory behind: test/support/postgres.ts registers
// both with test/support/process-end.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { eventually } from '../support/eventually.js';

const CHILD = resolve(import.meta.dirname, '../support/postgres-child.ts');

function isPostgres(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
  } catch {
    return false;
  }
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal}: the file's Postgres is stopped and its directory removed, and the process ends by ${signal}`, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD], { stdio: ['ignore', 'pipe', 'inherit'] });
    const ended = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, sig) => r(sig)));
    const started = await new Promise<{ dir: string; pid: number }>((res, rej) => {
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) res(JSON.parse(out.trim()) as { dir: string; pid: number });
      });
      child.on('exit', () => rej(new Error(`child ended before printing its Postgres: ${out}`)));
    });
    assert.ok(existsSync(started.dir), `${started.dir} was made`);
    assert.ok(isPostgres(started.pid), `postmaster ${started.pid} runs`);
    child.kill(signal);
    assert.equal(await ended, signal, 'ended by the signal');
    assert.ok(!existsSync(started.dir), `${started.dir} is gone`);
    await eventually(() => !isPostgres(started.pid), `postmaster ${started.pid} to exit after the file ended`);
  });
}
