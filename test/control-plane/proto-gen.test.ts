// proto/gen is exactly what `npm run gen` produces from proto/, and the
// proto stays `buf lint` clean.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out;
}

test('npm run gen reproduces proto/gen byte for byte', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'fleetwall-gen-'));
  try {
    const out = join(tmp, 'gen');
    execFileSync('bash', ['scripts/gen-proto.sh', out], { cwd: root, stdio: 'pipe' });
    const want = files(join(root, 'proto/gen'));
    const got = files(out);
    assert.deepEqual(got, want, 'the same set of generated files');
    for (const f of want) {
      assert.equal(
        readFileSync(join(out, f), 'utf8'),
        readFileSync(join(root, 'proto/gen', f), 'utf8'),
        `${f} differs: run npm run gen and commit proto/gen`,
      );
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('buf lint is clean', () => {
  const r = spawnSync('npx', ['--no-install', 'buf', 'lint', 'proto'], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, `buf lint failed:\n${r.stdout}${r.stderr}`);
  assert.equal(r.stdout.trim(), '', 'no findings');
});
