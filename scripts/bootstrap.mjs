#!/usr/bin/env node
// `npm start` and `npm test` on a fresh machine: install what is missing, then
// run. Plain Node, no dependencies (node_modules may not exist yet).
//
//   node scripts/bootstrap.mjs test [test files or folders...]
//   node scripts/bootstrap.mjs start [demo flags...]
//   node scripts/bootstrap.mjs ensure
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const log = (msg) => process.stderr.write(`[bootstrap] ${msg}\n`);

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.status !== 0) {
    log(`failed: ${cmd} ${args.join(' ')} (exit ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
}

// Debian packages the tests, the demo and `npm run build:bpf` need.
const APT = {
  clang: 'clang',
  llc: 'llvm',
  ip: 'iproute2',
  ethtool: 'ethtool',
  ping: 'iputils-ping',
  nft: 'nftables',
  bpftool: 'bpftool',
  tcpdump: 'tcpdump',
};

function ensureSystem() {
  if (process.platform !== 'linux') {
    log('fleetwall needs Linux (eBPF, XDP, network namespaces).');
    process.exit(1);
  }
  const missing = new Set();
  for (const [cmd, pkg] of Object.entries(APT)) if (!have(cmd)) missing.add(pkg);
  if (!existsSync('/usr/include/bpf/bpf_helpers.h')) missing.add('libbpf-dev');
  if (!existsSync('/usr/lib/x86_64-linux-gnu/libbpf.so.1') && !existsSync('/usr/lib/aarch64-linux-gnu/libbpf.so.1')) missing.add('libbpf1');
  if (missing.size > 0) {
    if (process.getuid?.() !== 0 || !have('apt-get')) {
      log(`missing system packages: ${[...missing].join(' ')}; install them (Debian: apt-get install -y ${[...missing].join(' ')})`);
      process.exit(1);
    }
    log(`installing ${[...missing].join(' ')}`);
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['install', '-y', '-qq', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  // bpffs: pins live under /sys/fs/bpf/fleetwall.
  const mounts = readFileSync('/proc/mounts', 'utf8');
  if (!mounts.split('\n').some((l) => l.split(' ')[1] === '/sys/fs/bpf' && l.split(' ')[2] === 'bpf')) {
    log('mounting bpffs at /sys/fs/bpf');
    run('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf']);
  }
}

function ensureNodeModules() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return;
  log('installing npm dependencies (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

// The Python client example (examples/python) is tested by `npm test`: it needs grpcio and
// grpcio-tools. Offline wheel folders named by `pip config list` are tried first (fast, no
// network), then a plain pip install.
function ensurePython() {
  const probe = spawnSync('python3', ['-c', 'import grpc, grpc_tools'], { stdio: 'ignore' });
  if (probe.status === 0) return;
  if (!have('python3')) {
    if (process.getuid?.() === 0 && have('apt-get')) run('apt-get', ['install', '-y', '-qq', 'python3', 'python3-pip']);
    else {
      log('python3 is missing: the Python client test needs it');
      return;
    }
  }
  const config = spawnSync('python3', ['-m', 'pip', 'config', 'list'], { encoding: 'utf8' }).stdout ?? '';
  const links = new Set();
  for (const m of config.matchAll(/file:\/\/(\S+?)\/simple/g)) if (existsSync(join(m[1], 'files'))) links.add(join(m[1], 'files'));
  for (const m of config.matchAll(/find-links='([^']+)'/g)) for (const d of m[1].split(/\s+/)) if (existsSync(d)) links.add(d);
  log('installing grpcio and grpcio-tools for the Python client');
  const offline =
    links.size > 0
      ? spawnSync(
          'python3',
          ['-m', 'pip', 'install', '-q', '--no-index', ...[...links].flatMap((d) => ['--find-links', d]), 'grpcio', 'grpcio-tools'],
          { stdio: 'inherit' },
        )
      : { status: 1 };
  if (offline.status !== 0) run('python3', ['-m', 'pip', 'install', '-q', 'grpcio', 'grpcio-tools']);
}

export function ensure() {
  ensureSystem();
  ensureNodeModules();
}

function findTests(paths) {
  const out = [];
  const walk = (p) => {
    const st = statSync(p);
    if (st.isDirectory()) {
      for (const e of readdirSync(p).sort()) if (e !== 'node_modules') walk(join(p, e));
    } else if (/\.test\.ts$/.test(p)) out.push(p);
  };
  for (const p of paths) walk(resolve(root, p));
  return out;
}

const [cmd = 'ensure', ...rest] = process.argv.slice(2);
if (cmd === 'ensure') {
  ensure();
} else if (cmd === 'test') {
  ensure();
  ensurePython();
  if (process.getuid?.() !== 0) log('warning: not root; data-plane and end-to-end tests need root and will fail');
  const files = findTests(rest.length ? rest : ['test']);
  if (files.length === 0) {
    log('no test files found');
    process.exit(1);
  }
  if (!rest.length) {
    log('type-checking (tsc --noEmit)');
    run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json', '--noEmit']);
  }
  const concurrency = process.env.FLEETWALL_TEST_CONCURRENCY ?? '2';
  // Hangs fail instead of stalling the run. Node 20's --test-timeout bounds each test FILE (its process is
  // killed; the longest file takes ~4 min on a loaded machine), and the stall watchdog ends a process whose
  // main thread stops running its event loop (a synchronous spin, which no timer interrupts) after 3 min,
  // printing that thread's stack.
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--import',
      './test/support/stall-watchdog.ts',
      '--test',
      `--test-concurrency=${concurrency}`,
      '--test-timeout=900000',
      '--test-reporter=spec',
      ...files,
    ],
    { stdio: 'inherit', cwd: root },
  );
  process.exit(r.status ?? 1);
} else if (cmd === 'start') {
  ensure();
  // The demo cleans up on SIGINT, SIGTERM and SIGHUP; this process waits for it and ends as it did.
  // A terminal's Ctrl-C reaches both (the whole foreground process group); a signal sent to this
  // process alone (npm passes SIGINT and SIGTERM on) is passed on. The demo obeys the first.
  const demo = spawn(process.execPath, [join(root, 'bin/fleetwall.mjs'), 'demo', ...rest], { stdio: 'inherit', cwd: root });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const sig of signals) process.on(sig, () => demo.kill(sig));
  demo.once('error', (e) => {
    log(`could not start the demo: ${e.message}`);
    process.exit(1);
  });
  demo.once('exit', (code, signal) => {
    if (signal === null) process.exit(code ?? 1);
    for (const sig of signals) process.removeAllListeners(sig);
    process.kill(process.pid, signal);
  });
} else {
  log(`unknown command ${cmd}: use ensure, test or start`);
  process.exit(2);
}
