// A bench stopped by a signal cleans up before it goes: `bench:dataplane`
// killed by SIGTERM in its drop-rate phase (namespaces, pinned maps, an
// nftables set, its attach helper running), and interrupted by Ctrl-C (SIGINT
// to its whole process group) while it loads its per-packet sets;
// `bench:agent` interrupted by Ctrl-C with its agent running;
// `bench:controlplane` killed by SIGTERM with its simulated agents connecting; `bench:memory`
// interrupted by Ctrl-C while it grows its maps under traffic. Each leaves no
// pin, namespace, file or process behind, and ends by that signal. Stopped
// before any measurement: seconds each, no traffic worth the name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');

interface Bench {
  readonly child: ChildProcess;
  readonly pid: number;
  output(): string;
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;
}

/** A bench as `npm run bench:*` runs it (bench/dataplane.ts ...), leading a process group of its own. */
function startBench(script: string, args: string[]): Bench {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.once('exit', (c, s) => r([c, s])));
  return { child, pid: child.pid!, output: () => out, exited };
}

/**
 * What the bench of this pid owns: pin dirs (fleetwall-bench-<name>-<pid>-<hex>, an agent's
 * fleetwall-test-<pid>-<hex>), namespaces (fwt<pid>-<hex>-a/b), its nft file, an agent's folder,
 * the processes of its group (its children, and its Postgres unless that has a group of its own).
 */
function leftovers(pid: number): { pins: string[]; netns: string[]; files: string[]; processes: number[] } {
  const pins = readdirSync('/sys/fs/bpf').filter((d) => d.startsWith('fleetwall-') && d.includes(`-${pid}-`));
  const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(`fwt${pid}-`));
  const files = readdirSync(tmpdir()).filter((f) => f.startsWith(`fw-bench-nft-${pid}-`) || f.startsWith(`fwagent-${pid}-`));
  const processes = spawnSync('pgrep', ['-g', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);
  return { pins, netns, files, processes };
}

/** The leftovers, with the command lines of the processes (for a failure message). */
function describe(pid: number): string {
  const l = leftovers(pid);
  const ps = l.processes.length ? spawnSync('ps', ['-o', 'pid,ppid,args', '-p', l.processes.join(',')], { encoding: 'utf8' }).stdout : '';
  return `${JSON.stringify(l)}\n${ps}`;
}

function groupHas(pid: number, pattern: string): boolean {
  return spawnSync('pgrep', ['-g', String(pid), '-f', pattern]).status === 0;
}

/**
 * Waits (up to 5 s) for the group's last processes to go: the tsx esbuild
 * services of the bench and its helpers exit on their own once their parent
 * has gone. Whatever is still there after that was left behind.
 */
async function groupGone(pid: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (leftovers(pid).processes.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

async function until(what: string, bench: Bench, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!ok()) {
    if (bench.child.exitCode !== null || bench.child.signalCode !== null)
      assert.fail(`the bench exited before ${what}:\n${bench.output()}`);
    if (Date.now() > deadline) assert.fail(`no ${what} within 120 s:\n${bench.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Removes whatever a failed run left (pins, namespaces, processes), after the assertions. */
function sweep(pid: number): void {
  const left = leftovers(pid);
  for (const p of left.processes) spawnSync('kill', ['-9', String(p)]);
  for (const ns of left.netns) spawnSync('ip', ['netns', 'del', ns]);
  for (const d of left.pins) spawnSync('rm', ['-rf', join('/sys/fs/bpf', d)]);
  for (const f of left.files) spawnSync('rm', ['-rf', join(tmpdir(), f)]);
}

test('bench:dataplane killed by SIGTERM in the drop-rate phase leaves no pin, namespace or process', { timeout: 180_000 }, async () => {
  const bench = startBench('bench/dataplane.ts', ['--rounds', '1', '--no-pps', '--no-paced', '--traffic', 'one']);
  try {
    // The richest state before a window: namespaces, pinned sinks, the nft set, the attach helper running.
    await until('pinned maps, namespaces and the attach helper', bench, () => {
      const l = leftovers(bench.pid);
      return l.pins.length > 0 && l.netns.length === 2 && groupHas(bench.pid, 'bench/lib/attach-helper.ts');
    });
    process.kill(bench.pid, 'SIGTERM'); // the bench alone, as `kill PID` does
    const [code, signal] = await bench.exited;
    await groupGone(bench.pid);
    assert.ok(signal === 'SIGTERM' || code === 143, `ended by SIGTERM (code ${code}, signal ${signal}):\n${bench.output()}`);
    assert.deepEqual(leftovers(bench.pid), { pins: [], netns: [], files: [], processes: [] }, `${describe(bench.pid)}\n${bench.output()}`);
  } finally {
    sweep(bench.pid);
  }
});

test('bench:dataplane interrupted by Ctrl-C while loading its per-packet sets leaves no pin or process', { timeout: 180_000 }, async () => {
  const bench = startBench('bench/dataplane.ts', ['--rounds', '1', '--no-mpps']);
  try {
    await until('pinned maps', bench, () => leftovers(bench.pid).pins.length > 0);
    process.kill(-bench.pid, 'SIGINT'); // the whole group, as a terminal does
    const [code, signal] = await bench.exited;
    await groupGone(bench.pid);
    assert.ok(signal === 'SIGINT' || code === 130, `ended by SIGINT (code ${code}, signal ${signal}):\n${bench.output()}`);
    assert.deepEqual(leftovers(bench.pid), { pins: [], netns: [], files: [], processes: [] }, `${describe(bench.pid)}\n${bench.output()}`);
    assert.ok(!existsSync(`/proc/${bench.pid}`));
  } finally {
    sweep(bench.pid);
  }
});

test('bench:agent interrupted by Ctrl-C with its agent running leaves no pin, namespace or process', { timeout: 180_000 }, async () => {
  const bench = startBench('bench/agent.ts', ['--changes', '3', '--skip-snapshot']);
  try {
    await until('the agent process', bench, () => groupHas(bench.pid, 'node-agent/src/main.ts') && leftovers(bench.pid).pins.length > 0);
    process.kill(-bench.pid, 'SIGINT');
    const [code, signal] = await bench.exited;
    await groupGone(bench.pid);
    assert.ok(signal === 'SIGINT' || code === 130, `ended by SIGINT (code ${code}, signal ${signal}):\n${bench.output()}`);
    assert.deepEqual(leftovers(bench.pid), { pins: [], netns: [], files: [], processes: [] }, `${describe(bench.pid)}\n${bench.output()}`);
  } finally {
    sweep(bench.pid);
  }
});

test('bench:memory interrupted by Ctrl-C while it grows its maps under traffic leaves no pin, namespace or process', {
  timeout: 180_000,
}, async () => {
  const bench = startBench('bench/memory.ts', ['--quick']);
  try {
    // The grow phase: namespaces, the traffic's sender and receiver, pinned maps being resized.
    await until('namespaces and pinned maps', bench, () => {
      const l = leftovers(bench.pid);
      return l.pins.length > 0 && l.netns.length === 2;
    });
    process.kill(-bench.pid, 'SIGINT');
    const [code, signal] = await bench.exited;
    await groupGone(bench.pid);
    assert.ok(signal === 'SIGINT' || code === 130, `ended by SIGINT (code ${code}, signal ${signal}):\n${bench.output()}`);
    assert.deepEqual(leftovers(bench.pid), { pins: [], netns: [], files: [], processes: [] }, `${describe(bench.pid)}\n${bench.output()}`);
  } finally {
    sweep(bench.pid);
  }
});

test('bench:controlplane killed by SIGTERM with its agents connecting leaves no process', { timeout: 180_000 }, async () => {
  const bench = startBench('bench/controlplane.ts', [
    '--agents',
    '20',
    '--workers',
    '1',
    '--changes',
    '3',
    '--create-seconds',
    '1',
    '--skip-import',
  ]);
  try {
    await until('the simulated agents', bench, () => groupHas(bench.pid, 'controlplane/agent-worker.ts'));
    process.kill(bench.pid, 'SIGTERM'); // its control plane, Postgres and workers are its children
    const [code, signal] = await bench.exited;
    await groupGone(bench.pid);
    assert.ok(signal === 'SIGTERM' || code === 143, `ended by SIGTERM (code ${code}, signal ${signal}):\n${bench.output()}`);
    assert.deepEqual(leftovers(bench.pid), { pins: [], netns: [], files: [], processes: [] }, `${describe(bench.pid)}\n${bench.output()}`);
  } finally {
    sweep(bench.pid);
  }
});
