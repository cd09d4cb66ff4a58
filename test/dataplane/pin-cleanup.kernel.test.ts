// A test process ended by a signal (Ctrl-C, or the runner's SIGTERM past
// --test-timeout, when no `finally` runs) still removes the pin dirs it made:
// test/support/process-end.ts, registered by uniquePinDir.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const CHILD = resolve(import.meta.dirname, '../support/pin-dir-child.ts');

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  test(`${signal}: the pins of the process are removed, and it ends by ${signal}`, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD], { stdio: ['ignore', 'pipe', 'inherit'] });
    const ended = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, sig) => r(sig)));
    const dir = await new Promise<string>((res, rej) => {
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('\n')) res(out.trim());
      });
      child.on('exit', () => rej(new Error(`child ended before printing its pin dir: ${out}`)));
    });
    assert.ok(existsSync(dir), `${dir} was made`);
    child.kill(signal);
    assert.equal(await ended, signal, 'ended by the signal');
    assert.ok(!existsSync(dir), `${dir} is gone`);
  });
}
