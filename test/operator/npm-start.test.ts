// `npm start` from a clean clone: installs what is missing (npm ci), starts
// the control plane on embedded Postgres, an agent guarding one end of a veth
// pair in two new namespaces, sends traffic, blocks the attacker through the
// API and reaches live drop counters. --exit-after-drops makes it exit 0 once
// drops are counted (1 if none within 60 s). The clone is of HEAD: commit
// before running this locally.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');

/** A clean clone of HEAD; where the checkout is not a git repository, a copy without installed or generated state. */
function cleanCopy(to: string): void {
  try {
    execFileSync('git', ['-C', ROOT, 'rev-parse', '--git-dir'], { stdio: 'ignore' });
    execFileSync('git', ['clone', '--quiet', ROOT, to]);
  } catch {
    mkdirSync(to);
    execFileSync('sh', [
      '-c',
      `tar -C "${ROOT}" --exclude=./node_modules --exclude=./.fleetwall --exclude=./examples/python/gen -cf - . | tar -C "${to}" -xf -`,
    ]);
  }
}

test('npm start from a clean clone reaches live drop counters, then cleans up', { timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetwall-clone-'));
  chmodSync(dir, 0o755); // embedded Postgres runs as its own user and must traverse it
  const tag = `st${process.pid % 100000}`;
  try {
    const clone = join(dir, 'fleetwall');
    cleanCopy(clone);
    assert.ok(!existsSync(join(clone, 'node_modules')), 'a clean clone has no node_modules');
    const child = spawn(
      'npm',
      ['start', '--', '--exit-after-drops', '--tag', tag, '--grpc-port', '0', '--http-port', '0', '--data-dir', join(dir, 'data')],
      {
        cwd: clone,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, npm_config_loglevel: 'error' },
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    assert.equal(code, 0, `npm start exited ${code}:\n${out}`);
    assert.match(out, /installing npm dependencies/, 'it installed what was missing');
    assert.match(out, /agent \S+ attached to \S+ and in sync/);
    assert.match(out, /"result":"blocked"/, 'the attacker was blocked through /manage-ip');
    const drops = /drop=(\d+)/g;
    let maxDrop = 0;
    for (const m of out.matchAll(drops)) maxDrop = Math.max(maxDrop, Number(m[1]));
    assert.ok(maxDrop > 0, `drop counters moved:\n${out}`);
    assert.match(out, /first drops counted/);
    // Cleanup happened: no namespaces, no pins.
    const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    assert.ok(!netns.includes(`fw${tag}-`), `namespaces removed: ${netns}`);
    assert.ok(!existsSync(`/sys/fs/bpf/fleetwall-${tag}`), 'pins removed');
  } finally {
    for (const ns of [`fw${tag}-c`, `fw${tag}-s`]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    rmSync(`/sys/fs/bpf/fleetwall-${tag}`, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
