// The agent's health listener on a Unix socket (issue 16, finding 8): a
// socket an earlier run left at the path is replaced; a file, directory or
// symlink there is never removed - the listen fails saying so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentHealth } from '../../node-agent/src/health/agent-health.js';
import { HealthServer } from '../../node-agent/src/health/health-server.js';
import { AgentMetrics } from '../../node-agent/src/health/metrics.js';

function server(): HealthServer {
  const health = () => ({ syncState: 'in_sync' }) as unknown as AgentHealth;
  return new HealthServer(health, new AgentMetrics(health), () => true);
}

function get(socketPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/healthz' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

test('a file, a directory or a symlink at the socket path is left alone; the listen fails naming it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fw-health-'));
  try {
    const file = join(dir, 'health.sock');
    writeFileSync(file, 'precious');
    await assert.rejects(server().listen(`unix:${file}`), /exists and is not a socket \(a file\): refusing to remove it/);
    assert.equal(readFileSync(file, 'utf8'), 'precious');

    const sub = join(dir, 'sub');
    mkdirSync(sub);
    await assert.rejects(server().listen(`unix:${sub}`), /a directory/);
    assert.ok(existsSync(sub));

    const target = join(dir, 'target');
    writeFileSync(target, 'kept');
    const link = join(dir, 'link.sock');
    symlinkSync(target, link);
    await assert.rejects(server().listen(`unix:${link}`), /a symlink/);
    assert.equal(readFileSync(target, 'utf8'), 'kept');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a stale socket from an earlier run is replaced; a free path just works', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fw-health-'));
  try {
    const path = join(dir, 'health.sock');
    // An earlier agent was killed (-9) while listening: its socket file stays.
    spawnSync(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    assert.ok(lstatSync(path).isSocket(), 'a stale socket is there');
    const s = server();
    await s.listen(`unix:${path}`);
    try {
      assert.equal(await get(path), 200);
    } finally {
      await s.close();
    }
    const fresh = server();
    await fresh.listen(`unix:${join(dir, 'new.sock')}`);
    try {
      assert.equal(await get(join(dir, 'new.sock')), 200);
    } finally {
      await fresh.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
