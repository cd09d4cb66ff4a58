// `fleetwall demo`, what `npm start` runs: the whole product on one machine.
//
//   1. an embedded Postgres (data under .fleetwall/) and a control plane on
//      it, gRPC :50051, HTTP :8080
//   2. two new network namespaces joined by a veth pair (see demo-net.ts)
//   3. an agent guarding the server's end of the pair (XDP ingress + TC egress)
//   4. pings from a good client and an attacker, 20 per second each
//   5. after a few seconds the attacker is blocked through the HTTP API
//      (POST /manage-ip, the call from the product brief) and the drop
//      counters move live: this run's (demo-view.ts), counted from its start
//   Ctrl-C (SIGINT, SIGTERM or SIGHUP), the Postgres gone or an unexpected
//   error: stop the traffic, stop the agent and remove its pins, delete the
//   namespaces, stop the control plane, then Postgres (demo-stop.ts). The
//   children run in process groups of their own, so a terminal's Ctrl-C
//   reaches only the demo and they stop in that order. Rules stay in .fleetwall/.
//
// Flags: --exit-after-drops (exit 0 once drops are counted; 1 if none within
// 60 s), --seconds N, --tag T (namespace names), --block-after S, and the
// control plane's own flags --grpc-port, --http-port, --data-dir.
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { loadConfig } from '../../../control-plane/src/config.js';
import { startControlPlane, type ControlPlane } from '../../../control-plane/src/control-plane.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../../control-plane/src/main.js';
import { CounterQuery, GetCountersRequest } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import type { CounterSnapshot } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import { SyncState } from '../../../proto/gen/fleetwall/v1/node.js';
import { GetNodeRequest } from '../../../proto/gen/fleetwall/v1/node_service.js';
import { flagBool, flagString, parseArgs, parsePositiveInt, UsageError } from '../args.js';
import { connect, unary, type Clients } from '../client.js';
import { renderCounters } from '../commands/counters.js';
import { DEMO_ADDRESSES, DemoNet } from './demo-net.js';
import { DemoStop, Stopped } from './demo-stop.js';
import { sinceStart, summaryLine } from './demo-view.js';
import { UnixLink } from './unix-link.js';

const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const FLEETWALL_BIN = join(ROOT, 'bin/fleetwall.mjs');
const DROP_DEADLINE_MS = 60_000;
/** How long the agent gets to stop on SIGTERM (its last counters reach the control plane) before SIGKILL. */
const AGENT_STOP_MS = 5_000;

async function waitFor<T>(what: string, timeoutMs: number, stop: DemoStop, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await stop.race(probe());
      if (v !== undefined) return v;
    } catch (e) {
      if (e instanceof Stopped) throw e;
      last = e;
    }
    await stop.sleep(200);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** `p`, given at most ms: false if it did not settle in time (a failure is reported and counts as settled). */
async function within(ms: number, p: Promise<unknown>, onError: (e: unknown) => void): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = p.then(
    () => true,
    (e: unknown) => {
      onError(e);
      return true;
    },
  );
  const r = await Promise.race([settled, new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r;
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
  const stop = new DemoStop(say);
  const net = new DemoNet(tag);
  const pinPath = `/sys/fs/bpf/fleetwall-${tag}`;
  const nodeName = `${tag}-server`;
  let pg: EmbeddedPostgres | undefined;
  let cp: ControlPlane | undefined;
  let link: UnixLink | undefined;
  let clients: Clients | undefined;
  let agent: ChildProcess | undefined;
  const pings: ChildProcess[] = [];

  /** In order: traffic, agent, its pins, the namespaces, the control plane, Postgres. Each step bounded. */
  const cleanup = async (keepLogs: boolean): Promise<boolean> => {
    stop.cleaningUp();
    say('\ncleaning up: traffic, agent, its pins, namespaces, control plane, Postgres');
    const late: string[] = [];
    const report = (what: string) => (e: unknown) => say(`  ${what}: ${e instanceof Error ? e.message : String(e)}`);
    await Promise.all(pings.map((c) => net.terminate(c, 0)));
    if (agent) await net.terminate(agent, AGENT_STOP_MS);
    if (agent && existsSync(pinPath)) {
      // In a process group of its own too: a second Ctrl-C must not cut the uninstall short.
      const uninstall = spawn(process.execPath, [FLEETWALL_BIN, 'agent', 'uninstall', '--pin-path', pinPath, '--log-level', 'warn'], {
        stdio: 'inherit',
        detached: true,
      });
      const result = await new Promise<number | string | null>((r) => {
        const timer = setTimeout(() => r('timed out'), 60_000);
        uninstall.once('exit', (c, sig) => {
          clearTimeout(timer);
          r(c ?? sig);
        });
        uninstall.once('error', (e) => {
          clearTimeout(timer);
          r(e.message);
        });
      });
      if (result !== 0) {
        uninstall.kill('SIGKILL');
        say(`  removing the pins in ${pinPath} failed (${result}): run fleetwall agent uninstall --pin-path ${pinPath}`);
      }
    }
    await net.killAll();
    net.destroy();
    clients?.close();
    link?.close();
    // Without its database the control plane's last flushes wait on reconnects: do not wait long for them.
    const dbLost = stop.reason?.kind === 'error';
    if (cp && !(await within(dbLost ? 5_000 : 30_000, cp.stop(), report('control plane')))) late.push('the control plane');
    if (pg && !(await within(15_000, pg.stop(), report('Postgres')))) late.push('Postgres');
    if (keepLogs) say(`logs kept in ${logDir}`);
    else rmSync(logDir, { recursive: true, force: true });
    say(late.length ? `cleaned up, except: ${late.join(' and ')} did not stop in time` : 'cleaned up');
    return late.length === 0;
  };

  stop.install();
  let code = 0;
  try {
    const started = Date.now();
    say(`starting the control plane (embedded Postgres in ${resolve(cpConfig.dataDir)})...`);
    const logger = pino(
      { level: 'info', base: { service: 'fleetwall-control-plane' } },
      createWriteStream(join(logDir, 'control-plane.log')),
    );
    if (!cpConfig.databaseUrl) {
      pg = await startEmbeddedPostgres({
        dataDir: cpConfig.dataDir,
        port: cpConfig.embeddedPostgresPort,
        logger: logger.child({ component: 'embedded-postgres' }),
        processGroup: 'own',
        onUnexpectedExit: (e) =>
          stop.stop({ kind: 'error', message: `the embedded Postgres exited unexpectedly (${e.signal ?? `exit code ${e.code}`})` }),
      });
    }
    cp = await startControlPlane({ ...cpConfig, ...(pg ? { databaseUrl: pg.url } : {}) }, logger);
    stop.check();
    const grpcTarget = `127.0.0.1:${cp.grpcPort}`;
    const httpBase = `http://localhost:${cp.httpPort}`;
    say(`control plane up: gRPC ${grpcTarget}, HTTP ${httpBase} (logs: ${logDir})`);
    clients = connect(grpcTarget);
    const c = clients;

    // Start from a clean slate: the demo's attacker is not blocked yet.
    await stop.race(
      fetch(`${httpBase}/manage-ip`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ action: 'unblock', ip: DEMO_ADDRESSES.attacker }),
      }),
    );

    net.create();
    say(
      `namespaces ${net.client} (${DEMO_ADDRESSES.good} good, ${DEMO_ADDRESSES.attacker} attacker) <-> ${net.server} (${DEMO_ADDRESSES.server}, guarded)`,
    );
    link = await UnixLink.open(cp.grpcPort);
    const agentLog = createWriteStream(join(logDir, 'agent.log'));
    const readyFile = join(logDir, 'agent.ready');
    agent = net.spawnIn(
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
    agent.stdout?.pipe(agentLog);
    agent.stderr?.pipe(agentLog);
    agent.once('exit', (exitCode, sig) => {
      stop.stop({ kind: 'error', message: `the agent exited (${exitCode ?? sig}); see ${join(logDir, 'agent.log')}` });
    });
    await waitFor('the agent to attach and sync', 30_000, stop, async () => {
      if (!existsSync(readyFile)) return undefined;
      const n = await unary(c, c.nodes, c.nodes.getNode, GetNodeRequest.fromPartial({ name: nodeName }));
      return n.node?.connected && n.node.syncState === SyncState.SYNC_STATE_IN_SYNC ? n.node : undefined;
    });
    say(`agent ${nodeName} attached to ${net.serverIf} and in sync`);

    // Counters persist in the data directory: this run shows what it counted itself, from here on.
    const ruleIds = new Set<bigint>();
    const query = () =>
      GetCountersRequest.fromPartial({ query: CounterQuery.fromPartial({ nodeName, topRules: 5, ruleIds: [...ruleIds] }) });
    const first = (await stop.race(unary(c, c.counters, c.counters.getCounters, query()))).snapshot!;

    for (const src of [DEMO_ADDRESSES.good, DEMO_ADDRESSES.attacker]) {
      pings.push(net.spawnIn(net.client, ['ping', '-q', '-i', '0.05', '-I', src, DEMO_ADDRESSES.server]));
    }
    say(`traffic: ${DEMO_ADDRESSES.good} and ${DEMO_ADDRESSES.attacker} ping ${DEMO_ADDRESSES.server} 20 times a second each`);

    let prev: CounterSnapshot | undefined;
    let blockedAt: number | undefined;
    const trafficStart = Date.now();
    const tty = Boolean(process.stdout.isTTY) && !exitAfterDrops;
    for (;;) {
      if (stop.reason) break;
      const now = Date.now();
      if (blockedAt === undefined && now - trafficStart >= blockAfterMs) {
        const body = { action: 'block', ip: DEMO_ADDRESSES.attacker };
        say(
          `\nblocking the attacker through the API:\n  curl --location '${httpBase}/manage-ip' --header 'Content-Type: application/json' --data '${JSON.stringify(body)}'`,
        );
        const res = await stop.race(
          fetch(`${httpBase}/manage-ip`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(body),
          }),
        );
        const text = await stop.race(res.text());
        say(`  -> ${res.status} ${text}\n`);
        const id = (JSON.parse(text) as { rule?: { id?: string } }).rule?.id;
        if (id) ruleIds.add(BigInt(id));
        blockedAt = Date.now();
      }
      const snap = (await stop.race(unary(c, c.counters, c.counters.getCounters, query()))).snapshot!;
      const view = sinceStart(snap, first, ruleIds);
      const drops = view.fleet?.dropPackets ?? 0n;
      const header = `fleetwall demo — ${((now - started) / 1000).toFixed(0)} s${blockedAt ? `, attacker blocked ${((now - blockedAt) / 1000).toFixed(0)} s ago` : ', attacker not blocked yet'} (Ctrl-C to stop)`;
      if (tty) process.stdout.write(`\x1b[H\x1b[2J${header}\n\n${renderCounters(view, prev)}\n`);
      else say(summaryLine((now - started) / 1000, view));
      prev = view;
      if (drops > 0n && exitAfterDrops) {
        say(
          `first drops counted ${((Date.now() - started) / 1000).toFixed(1)} s after start (${((Date.now() - (blockedAt ?? started)) / 1000).toFixed(1)} s after the block)`,
        );
        break;
      }
      if (exitAfterDrops && now - started > DROP_DEADLINE_MS) {
        say(`no drops counted within ${DROP_DEADLINE_MS / 1000} s; logs in ${logDir}`);
        code = 1;
        break;
      }
      if (seconds > 0 && now - started >= seconds * 1000) break;
      await stop.sleep(1000);
    }
  } catch (e) {
    if (!(e instanceof Stopped)) stop.stop({ kind: 'error', message: e instanceof Error ? e.message : String(e) });
  }
  const reason = stop.reason;
  if (reason?.kind === 'error') say(`\nfleetwall demo: ${reason.message}`);
  if (reason) code = stop.exitCode();
  const clean = await cleanup(code !== 0 && reason?.kind !== 'signal');
  stop.uninstall();
  // A step that did not stop in time still holds handles (timers, sockets): end the process here.
  if (!clean) process.exit(code || 1);
  return code;
}
