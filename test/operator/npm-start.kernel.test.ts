// `npm start` from a clean clone: installs what is missing (npm ci), starts
// the control plane on embedded Postgres, an agent guarding one end of a veth
// pair in two new namespaces, sends traffic, blocks the attacker through the
// API and reaches live drop counters. --exit-after-drops makes it exit 0 once
// drops are counted (1 if none within 60 s). The clone is of HEAD: commit
// before running this locally.
//
// Then Ctrl-C as a terminal sends it: SIGINT to the whole process group (npm,
// sh, the bootstrap, the demo and every child of theirs at once). A second run
// on the same data directory shows this run's counters and rule only.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
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

let dir: string;
let clone: string;
let dataDir: string;
const tag = `st${process.pid % 100000}`;
const pinPath = `/sys/fs/bpf/fleetwall-${tag}`;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetwall-clone-'));
  chmodSync(dir, 0o755); // embedded Postgres runs as its own user and must traverse it
  clone = join(dir, 'fleetwall');
  dataDir = join(dir, 'data');
  cleanCopy(clone);
});

after(() => {
  for (const ns of [`fw${tag}-c`, `fw${tag}-s`]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  rmSync(pinPath, { recursive: true, force: true });
  // Anything of ours still running (a failed run): the demo, its agent, its Postgres.
  for (const pid of processesMentioning(dir)) spawnSync('kill', ['-9', String(pid)]);
  rmSync(dir, { recursive: true, force: true });
});

function npmStart(
  args: string[],
  detached = false,
): { child: ChildProcess; output: () => string; exited: Promise<[number | null, string | null]> } {
  const child = spawn('npm', ['start', '--', '--tag', tag, '--grpc-port', '0', '--http-port', '0', '--data-dir', dataDir, ...args], {
    cwd: clone,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_loglevel: 'error' },
    detached,
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<[number | null, string | null]>((r) => child.once('exit', (c, s) => r([c, s])));
  return { child, output: () => out, exited };
}

/** Pids of live processes whose command line contains `text`. */
function processesMentioning(text: string): number[] {
  const ps = spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).stdout;
  return ps
    .split('\n')
    .filter((l) => l.includes(text))
    .map((l) => Number(l.trim().split(/\s+/)[0]))
    .filter((pid) => pid !== process.pid);
}

/** Pids of the live processes in process group `pgid`. */
function processGroup(pgid: number): number[] {
  const r = spawnSync('pgrep', ['-g', String(pgid)], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/**
 * Waits (up to 5 s) for `gone` to hold: a tsx esbuild service exits on its
 * own once its parent has gone. Whatever is still there after that was left behind.
 */
async function settled(gone: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!gone() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

function assertCleanedUp(what: string): void {
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  assert.ok(!netns.includes(`fw${tag}-`), `${what}: namespaces removed: ${netns}`);
  assert.ok(!existsSync(pinPath), `${what}: pins removed (${pinPath})`);
  const left = processesMentioning(dir);
  assert.deepEqual(
    left,
    [],
    `${what}: no process of the demo left:\n${execFileSync('ps', ['-o', 'pid,pgid,args', '-p', left.join(',') || '1'], { encoding: 'utf8' })}`,
  );
}

test('npm start from a clean clone reaches live drop counters, then cleans up', { timeout: 300_000 }, async () => {
  assert.ok(!existsSync(join(clone, 'node_modules')), 'a clean clone has no node_modules');
  const run = npmStart(['--exit-after-drops']);
  const [code] = await run.exited;
  const out = run.output();
  assert.equal(code, 0, `npm start exited ${code}:\n${out}`);
  assert.match(out, /installing npm dependencies/, 'it installed what was missing');
  assert.match(out, /agent \S+ attached to \S+ and in sync/);
  assert.match(out, /"result":"blocked"/, 'the attacker was blocked through /manage-ip');
  let maxDrop = 0;
  for (const m of out.matchAll(/drop=(\d+)/g)) maxDrop = Math.max(maxDrop, Number(m[1]));
  assert.ok(maxDrop > 0, `drop counters moved:\n${out}`);
  assert.match(out, /first drops counted/);
  await settled(() => processesMentioning(dir).length === 0);
  assertCleanedUp('after --exit-after-drops');
});

test('Ctrl-C (SIGINT to the whole process group) cleans up in order; a second run shows only its own counters', {
  timeout: 300_000,
}, async () => {
  // Same tag and data directory as the run above: its rule was deleted ("unblock") and its counters persist.
  const run = npmStart([], true);
  const pgid = run.child.pid!;
  const deadline = Date.now() + 120_000;
  while (!/drop=[1-9]/.test(run.output())) {
    if (run.child.exitCode !== null || run.child.signalCode !== null) assert.fail(`npm start exited early:\n${run.output()}`);
    if (Date.now() > deadline) assert.fail(`no drops within 120 s:\n${run.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  process.kill(-pgid, 'SIGINT'); // what a terminal does on Ctrl-C
  const [code, signal] = await run.exited;
  const out = run.output();
  assert.ok(signal === 'SIGINT' || code === 130, `npm start ended by the interrupt (code ${code}, signal ${signal}):\n${out}`);
  assert.doesNotMatch(out, /TypeError|Error:/, 'no crash');
  assert.match(out, /cleaned up/, `the demo said it cleaned up before npm returned:\n${out}`);
  await settled(() => processGroup(pgid).length === 0 && processesMentioning(dir).length === 0);
  assert.deepEqual(processGroup(pgid), [], 'no process of the group is left once npm returns');
  assertCleanedUp('after Ctrl-C');

  // This run's view: counters from its own start, and only the rule it created.
  const lines = out.split('\n').filter((l) => /^\[\d+\.\d s\] pass=/.test(l));
  assert.ok(lines.length > 0, out);
  assert.match(lines[0]!, / drop=0 /, `the first line counts from this run's start, not the earlier run's drops:\n${out}`);
  const blocked = /"result":"blocked".*"rule":\{"id":"(\d+)"/.exec(out);
  assert.ok(blocked, `the block response names its rule:\n${out}`);
  const shown = new Set([...out.matchAll(/rule #(\d+)/g)].map((m) => m[1]));
  assert.ok(shown.size > 0, `the rule's counter is shown:\n${out}`);
  assert.deepEqual([...shown], [blocked[1]], 'only the rule of this run is shown (not the earlier run’s deleted one)');
});
