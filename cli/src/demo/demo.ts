// `fleetwall demo`, what `npm start` runs: the whole product on one machine.
//
//   1. a control plane on embedded Postgres (data under .fleetwall/), gRPC :50051, HTTP :8080
//   2. two new network namespaces joined by a veth pair (see demo-net.ts)
//   3. an agent guarding the server's end of the pair (XDP ingress + TC egress)
//   4. pings from a good client and an attacker, 20 per second each
//   5. after a few seconds the attacker is blocked through the HTTP API
//      (POST /manage-ip, the call from the product brief) and the drop
//      counters move live
//   Ctrl-C: stop the traffic, stop and uninstall the agent, delete the
//   namespaces, stop the control plane. Rules stay in .fleetwall/.
//
// Flags: --exit-after-drops (exit 0 once drops are counted; 1 if none within
// 60 s), --seconds N, --tag T (namespace names), --block-after S, and the
// control plane's own flags --grpc-port, --http-port, --data-dir.
import { spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { loadConfig } from '../../../control-plane/src/config.js';
import { startControlPlane, type ControlPlane } from '../../../control-plane/src/control-plane.js';
import { CounterQuery, GetCountersRequest } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import type { CounterSnapshot } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import { SyncState } from '../../../proto/gen/fleetwall/v1/node.js';
import { GetNodeRequest } from '../../../proto/gen/fleetwall/v1/node_service.js';
import { flagBool, flagString, parseArgs, parsePositiveInt, UsageError } from '../args.js';
import { connect, unary, type Clients } from '../client.js';
import { renderCounters } from '../commands/counters.js';
import { DEMO_ADDRESSES, DemoNet } from './demo-net.js';
import { UnixLink } from './unix-link.js';

const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const FLEETWALL_BIN = join(ROOT, 'bin/fleetwall.mjs');
const DROP_DEADLINE_MS = 60_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export async function runDemo(argv: string[]): Promise<number> {
  const p = parseArgs(argv, {
    booleans: ['exit-after-drops'],
    values: ['seconds', 'tag', 'block-after', 'grpc-port', 'http-port', 'data-dir'],
  });
  if (process.getuid?.() !== 0) {
    process.stderr.write('fleetwall demo: run as root (it creates network namespaces and loads XDP programs)\n');
    return 1;
  }
  const tag = flagString(p, 'tag') ?? 'demo';
  if (!/^[a-z0-9]{1,8}$/.test(tag)) throw new UsageError('--tag must be 1-8 lowercase letters or digits');
  const exitAfterDrops = flagBool(p, 'exit-after-drops');
  const seconds = parsePositiveInt(flagString(p, 'seconds'), 'seconds', 0);
  const blockAfterMs = parsePositiveInt(flagString(p, 'block-after'), 'block-after', 3) * 1000;
  const cpArgs: string[] = [];
  for (const f of ['grpc-port', 'http-port', 'data-dir']) {
    const v = flagString(p, f);
    if (v !== undefined) cpArgs.push(`--${f}`, v);
  }
  const parsed = loadConfig(cpArgs);
  const cpConfig = { ...parsed.config, grpcHost: '127.0.0.1', httpHost: '127.0.0.1' };

  const logDir = mkdtempSync(join(tmpdir(), `fleetwall-${tag}-logs-`));
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const net = new DemoNet(tag);
  const pinPath = `/sys/fs/bpf/fleetwall-${tag}`;
  const nodeName = `${tag}-server`;
  let cp: ControlPlane | undefined;
  let link: UnixLink | undefined;
  let clients: Clients | undefined;
  let agentStarted = false;

  let cleaned = false;
  const cleanup = async (keepLogs: boolean) => {
    if (cleaned) return;
    cleaned = true;
    say('\ncleaning up: traffic, agent (uninstall), namespaces, control plane');
    net.destroy(); // kills pings and the agent (it keeps nothing running), removes the veth
    if (agentStarted && existsSync(pinPath)) {
      spawnSync(process.execPath, [FLEETWALL_BIN, 'agent', 'uninstall', '--pin-path', pinPath, '--log-level', 'warn'], {
        stdio: 'inherit',
      });
    }
    clients?.close();
    link?.close();
    await cp?.stop().catch(() => undefined);
    if (keepLogs) say(`logs kept in ${logDir}`);
    else rmSync(logDir, { recursive: true, force: true });
  };
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let ok = false;
  try {
    const started = Date.now();
    say(`starting the control plane (embedded Postgres in ${resolve(cpConfig.dataDir)})...`);
    const logger = pino(
      { level: 'info', base: { service: 'fleetwall-control-plane' } },
      createWriteStream(join(logDir, 'control-plane.log')),
    );
    cp = await startControlPlane(cpConfig, logger);
    const grpcTarget = `127.0.0.1:${cp.grpcPort}`;
    const httpBase = `http://localhost:${cp.httpPort}`;
    say(`control plane up: gRPC ${grpcTarget}, HTTP ${httpBase} (logs: ${logDir})`);
    clients = connect(grpcTarget);

    // Start from a clean slate: the demo's attacker is not blocked yet.
    await fetch(`${httpBase}/manage-ip`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ action: 'unblock', ip: DEMO_ADDRESSES.attacker }),
    });

    net.create();
    say(
      `namespaces ${net.client} (${DEMO_ADDRESSES.good} good, ${DEMO_ADDRESSES.attacker} attacker) <-> ${net.server} (${DEMO_ADDRESSES.server}, guarded)`,
    );
    link = await UnixLink.open(cp.grpcPort);
    const agentLog = createWriteStream(join(logDir, 'agent.log'));
    const readyFile = join(logDir, 'agent.ready');
    const agent = net.spawnIn(
      net.server,
      [
        process.execPath,
        FLEETWALL_BIN,
        'agent',
        '--control-plane',
        link.target,
        '--node-name',
        nodeName,
        '--labels',
        'role=demo',
        '--interfaces',
        net.serverIf,
        '--pin-path',
        pinPath,
        '--http-addr',
        'off',
        '--ready-file',
        readyFile,
        '--counter-interval',
        '1s',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    agentStarted = true;
    agent.stdout?.pipe(agentLog);
    agent.stderr?.pipe(agentLog);
    let agentExit: string | undefined;
    agent.once('exit', (code, sig) => {
      agentExit = `agent exited (${code ?? sig}); see ${join(logDir, 'agent.log')}`;
    });
    const c = clients;
    await waitFor('the agent to attach and sync', 30_000, async () => {
      if (agentExit) throw new Error(agentExit);
      if (!existsSync(readyFile)) return undefined;
      const n = await unary(c, c.nodes, c.nodes.getNode, GetNodeRequest.fromPartial({ name: nodeName }));
      return n.node?.connected && n.node.syncState === SyncState.SYNC_STATE_IN_SYNC ? n.node : undefined;
    });
    say(`agent ${nodeName} attached to ${net.serverIf} and in sync`);

    for (const src of [DEMO_ADDRESSES.good, DEMO_ADDRESSES.attacker]) {
      net.spawnIn(net.client, ['ping', '-q', '-i', '0.05', '-I', src, DEMO_ADDRESSES.server]);
    }
    say(`traffic: ${DEMO_ADDRESSES.good} and ${DEMO_ADDRESSES.attacker} ping ${DEMO_ADDRESSES.server} 20 times a second each`);

    const query = GetCountersRequest.fromPartial({ query: CounterQuery.fromPartial({ nodeName, topRules: 5 }) });
    let prev: CounterSnapshot | undefined;
    let blockedAt: number | undefined;
    const trafficStart = Date.now();
    const tty = Boolean(process.stdout.isTTY) && !exitAfterDrops;
    for (;;) {
      if (interrupted) break;
      if (agentExit) throw new Error(agentExit);
      const now = Date.now();
      if (blockedAt === undefined && now - trafficStart >= blockAfterMs) {
        const body = { action: 'block', ip: DEMO_ADDRESSES.attacker };
        say(
          `\nblocking the attacker through the API:\n  curl --location '${httpBase}/manage-ip' --header 'Content-Type: application/json' --data '${JSON.stringify(body)}'`,
        );
        const res = await fetch(`${httpBase}/manage-ip`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        say(`  -> ${res.status} ${await res.text()}\n`);
        blockedAt = Date.now();
      }
      const snap = (await unary(c, c.counters, c.counters.getCounters, query)).snapshot!;
      const drops = snap.fleet?.dropPackets ?? 0n;
      const header = `fleetwall demo — ${((now - started) / 1000).toFixed(0)} s${blockedAt ? `, attacker blocked ${((now - blockedAt) / 1000).toFixed(0)} s ago` : ', attacker not blocked yet'} (Ctrl-C to stop)`;
      if (tty) process.stdout.write(`\x1b[H\x1b[2J${header}\n\n${renderCounters(snap, prev)}\n`);
      else
        say(
          `[${((now - started) / 1000).toFixed(1)} s] pass=${snap.fleet?.passPackets ?? 0n} drop=${drops} would-drop=${snap.fleet?.wouldDropPackets ?? 0n}`,
        );
      prev = snap;
      if (drops > 0n && exitAfterDrops) {
        say(
          `first drops counted ${((Date.now() - started) / 1000).toFixed(1)} s after start (${((Date.now() - (blockedAt ?? started)) / 1000).toFixed(1)} s after the block)`,
        );
        ok = true;
        return 0;
      }
      if (exitAfterDrops && now - started > DROP_DEADLINE_MS) {
        say(`no drops counted within ${DROP_DEADLINE_MS / 1000} s; logs in ${logDir}`);
        return 1;
      }
      if (seconds > 0 && now - started >= seconds * 1000) break;
      await sleep(1000);
    }
    ok = true;
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup(!ok);
  }
}
