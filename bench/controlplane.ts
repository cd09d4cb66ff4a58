// npm run bench:controlplane — the control plane under a simulated fleet, JSON lines on stdout:
//
//   ms.propagation_p50 / _p99 / _max   commit of a rule create -> its delta at EVERY agent
//                                      (per change: the slowest of the 1,000 agents), over
//                                      250 creates, one every --pace-ms (100: 10 changes/s)
//   rules_per_second.create            sustained single-rule CreateRule calls (--concurrency
//                                      in flight), API + store + commit (no agents yet); with
//                                      1,000 agents following: rules_per_second.create_1000_agents_following
//   seconds.import_1m_commit           1,000,000-prefix ImportRules stream: first byte -> committed
//   seconds.import_1m_received         first byte -> one connected agent has the whole revision
//   mb.controlplane_rss_1000_agents    control-plane RSS with 1,000 agents connected, after the
//                                      propagation and create phases
//   (+ context: seconds.connect_1000_agents, ms.propagation_mean, ms.propagation_first_agent_p50,
//    ms.controlplane_fanout_mean, cpu_ms_per_change.*, cpu_ms_per_create.*, seconds.create_backlog_drain,
//    ms.expiry_to_agent_max, mb.controlplane_rss_peak, mb.controlplane_rss_1m_rules)
//
// TLS side by side (issue 15): a second control plane with TLS and API tokens on
// (FLEETWALL_TLS, own PKI, own database on the same Postgres) runs at the same time
// as the plaintext one, each with its own fleet of --agents (the TLS one's enrolled
// first, a join token each: seconds.enroll_agents_tls, then dialing mutual TLS with
// their own node certificates; its API client dials TLS and sends a token). The
// fleet cases alternate between the two in rounds (ABBA: plain,tls | tls,plain | ...;
// --rounds 8): the create rate in short windows (--create-seconds per side, split
// over the rounds, after an unmeasured warm-up window each), the propagation in
// blocks of the --changes (each followed until its whole fleet has it), the creates
// with the fleet following likewise. Each metric is printed per side (suffix _tls),
// over all its rounds, and the two are compared by the MEDIAN OF PER-ROUND RATIOS:
//   ratio.create_tls_over_plain              target >= 0.83 (1/1.2)
//   ratio.propagation_p99_tls_over_plain     target <= 1.2 (per block: its p99)
//   (+ context: ratio.create_1000_agents_following_tls_over_plain, each with per_round and pooled)
//   tls.handshakes_per_agent, tls.handshakes_per_client   1: connections are reused, not redone
//                                                         per call or per message
// --skip-tls leaves the TLS side out. cpu_ms_per_create.controlplane / .api_client (and
// _tls) are the CPU of the control plane and of this process (the API client) per create
// over the create windows: where a TLS create's extra cost goes; calls_per_second.health_check
// and cpu_us_per_call.health_check_* (and _tls, ratio.health_check_tls_over_plain) the same for
// grpc.health.v1 Check calls, which need no token and no store: what the TLS transport
// itself costs per unary call.
//
// Real Postgres (embedded, fsync on), each control plane as its own process
// (child), the agents as real gRPC clients (own HTTP/2 connection each)
// spread over --workers child processes per fleet. Commit times come from the
// revision's commit_time (Postgres clock_timestamp(), ms precision in the
// Delta; arrival is sub-ms wall clock on the same host). The import cases run
// against the plaintext control plane after the TLS side and both fleets are
// stopped. SIGINT, SIGTERM or SIGHUP: the workers, the control planes and
// Postgres are stopped, then it ends by that signal (lib/interrupt.ts).
// Options: --agents 1000 --workers 2 --changes 250 --pace-ms 100 --create-seconds 8 --rounds 8
//          --concurrency 16 --import 1000000 --skip-import --skip-create --skip-tls --cp-prof DIR
// Smallest run that exercises every case: --agents 10 --workers 1 --changes 5 --pace-ms 20
//          --create-seconds 1 --skip-import
// Targets (issue 3): p99 <= 100 ms at 1,000 agents; 1M import committed <= 20 s and
// received <= 30 s; RSS <= 1 GB at 1,000 agents. Issue 15: the TLS ratios above.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ChildControlPlane, connectClients, startChildControlPlane, type TestClients } from '../test/support/control-plane.js';
import { startTestPostgres } from '../test/support/postgres.js';
import { emit, log, round2 } from './controlplane/emit.js';
import { enrollAgents } from './controlplane/enroll-agents.js';
import { startWorkers, type Worker, waitAll } from './controlplane/fleet.js';
import { importCases } from './controlplane/import-cases.js';
import { alternatePropagation, alternateWindows } from './controlplane/interleaved.js';
import { controlPlaneHistogram, cpuMs, rssMb } from './controlplane/proc-stats.js';
import { median, percentile, roundRatios, splitEven } from './controlplane/rounds.js';
import { healthBurst, openSide, type Side } from './controlplane/side.js';
import { checkpoint, runBench, sleep, untilInterrupted } from './lib/interrupt.js';

const argv = process.argv.slice(2);
const opt = (name: string, def: number): number => {
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return def;
  const a = argv[i]!;
  return Number(a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[i + 1]);
};
const AGENTS = opt('agents', 1000);
const WORKERS = opt('workers', 2);
const CHANGES = opt('changes', 250);
const PACE_MS = opt('pace-ms', 100);
const CREATE_SECONDS = opt('create-seconds', 8);
const ROUNDS = Math.max(1, opt('rounds', 8));
const CONCURRENCY = opt('concurrency', 16);
const IMPORT = opt('import', 1_000_000);
const SKIP_IMPORT = argv.includes('--skip-import');
const SKIP_CREATE = argv.includes('--skip-create');
const SKIP_TLS = argv.includes('--skip-tls');
/** --cp-prof DIR: CPU profiles of the control-plane processes, written when they exit (file names carry the pid). */
const CP_PROF = argv.includes('--cp-prof') ? argv[argv.indexOf('--cp-prof') + 1] : undefined;
const NODE_ARGS = CP_PROF ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${CP_PROF}`] } : {};

const now = () => performance.timeOrigin + performance.now();
const perRound = (xs: number[]) => xs.map(round2);

/** The TLS side's ratio over the plaintext side's: the median of per-round ratios, and the pooled one. */
function emitRatio(metric: string, tls: number[], plain: number[], pooled: number, extra: Record<string, unknown>): void {
  const r = roundRatios(tls, plain);
  emit(metric, r.median, { ...extra, rounds: r.perRound.length, per_round: perRound(r.perRound), pooled: round2(pooled) });
}

/** Both sides' fleet cases, interleaved. */
async function fleetCases(sides: Side[]): Promise<void> {
  const tlsSide = sides.find((s) => s.name === 'tls');
  const name = (s: Side, m: string) => `${m}${s.suffix}`;

  // Phase 1: single-rule creates through the API (API + store + commit; nobody following yet).
  if (!SKIP_CREATE) {
    const window = CREATE_SECONDS / ROUNDS;
    const c = await alternateWindows(sides, {
      rounds: ROUNDS,
      windowSeconds: window,
      concurrency: CONCURRENCY,
      warmupSeconds: Math.min(1, window),
    });
    for (const s of sides) {
      const f = c.get(s.name)!;
      emit(name(s, 'rules_per_second.create'), f.perSecond, {
        concurrency: CONCURRENCY,
        seconds: round2(f.seconds),
        agents_following: 0,
        rounds: ROUNDS,
        per_round: perRound(f.perRound),
      });
      emit(name(s, 'cpu_ms_per_create.controlplane'), f.cpMsPerCall, { note: 'control-plane CPU per create, over the create windows' });
      emit(name(s, 'cpu_ms_per_create.api_client'), f.clientMsPerCall, {
        note: "the bench's API client (this process) CPU per create, over the create windows",
      });
    }
    if (tlsSide) {
      const t = c.get('tls')!;
      const p = c.get('plain')!;
      emitRatio('ratio.create_tls_over_plain', t.perRound, p.perRound, t.perSecond / p.perSecond, {
        target: '>= 0.83 (1/1.2)',
        concurrency: CONCURRENCY,
      });
    }
  }

  // Phase 1b: the transport alone (health checks: no token, no store), to name what TLS itself costs per call.
  if (!SKIP_CREATE) {
    const rounds = Math.min(ROUNDS, 4);
    const h = await alternateWindows(sides, {
      burst: healthBurst,
      rounds,
      windowSeconds: Math.min(1, CREATE_SECONDS / rounds),
      concurrency: CONCURRENCY,
      warmupSeconds: 0.5,
    });
    for (const s of sides) {
      const f = h.get(s.name)!;
      emit(name(s, 'calls_per_second.health_check'), f.perSecond, {
        concurrency: CONCURRENCY,
        rounds,
        per_round: perRound(f.perRound),
        note: 'grpc.health.v1 Check: the transport alone (no token, no store)',
      });
      emit(name(s, 'cpu_us_per_call.health_check_controlplane'), f.cpMsPerCall * 1000, { note: 'control-plane CPU per health check' });
      emit(name(s, 'cpu_us_per_call.health_check_api_client'), f.clientMsPerCall * 1000, {
        note: "the bench client's CPU per health check",
      });
    }
    if (tlsSide) {
      const t = h.get('tls')!;
      const p = h.get('plain')!;
      emitRatio('ratio.health_check_tls_over_plain', t.perRound, p.perRound, t.perSecond / p.perSecond, { concurrency: CONCURRENCY });
    }
  }

  // Phase 2: the fleets connect (TLS: each simulated node enrolled first, then dialing mutual TLS with its certificate).
  for (const s of sides) {
    const nodes = s.access ? await timedEnroll(s) : undefined;
    const t = now();
    await checkpoint();
    const { retries } = await startWorkers(s.cp.target, AGENTS, WORKERS, s.workers, nodes);
    emit(name(s, 'seconds.connect_1000_agents'), (now() - t) / 1000, {
      agents: AGENTS,
      retries,
      note: 'retries: streams opened again after ending before in sync',
    });
  }
  await sleep(1000);
  const idle0 = sides.map((s) => cpuMs(s.cp.pid));
  await sleep(5000);
  sides.forEach((s, i) =>
    emit(name(s, 'cpu_percent.controlplane_idle_1000_agents'), ((cpuMs(s.cp.pid) - idle0[i]!) / 5000) * 100, {
      agents: AGENTS,
      note: 'pings, node flushes, expiry polls with no changes (both sides measured over the same 5 s)',
    }),
  );

  // Phase 3: propagation of single creates, in alternating blocks.
  const blocks = splitEven(CHANGES, ROUNDS);
  const prop = await alternatePropagation(sides, { blocks, paceMs: PACE_MS, agents: AGENTS });
  const ctx = { agents: AGENTS, changes: CHANGES, pace_ms: PACE_MS };
  const pooled = new Map<string, { p50: number; p99: number }>();
  for (const s of sides) {
    const f = prop.get(s.name)!;
    const slowest = [...f.slowest].sort((a, b) => a - b);
    pooled.set(s.name, { p50: percentile(slowest, 50), p99: percentile(slowest, 99) });
    emit(name(s, 'ms.propagation_p50'), percentile(slowest, 50), ctx);
    emit(name(s, 'ms.propagation_p99'), percentile(slowest, 99), {
      ...ctx,
      blocks: blocks.length,
      per_block_p99: perRound(f.perRoundP99),
    });
    emit(name(s, 'ms.propagation_max'), slowest[slowest.length - 1]!, ctx);
    emit(name(s, 'ms.propagation_mean'), f.meanAgent, { ...ctx, note: 'mean over (change, agent) pairs' });
    const first = [...f.first].sort((a, b) => a - b);
    emit(name(s, 'ms.propagation_first_agent_p50'), percentile(first, 50), { ...ctx, note: 'commit -> the FIRST agent has it' });
    emit(name(s, 'cpu_ms_per_change.controlplane'), f.cpMsPerChange, {
      ...ctx,
      note: 'control-plane CPU per create (API, commit, fan-out to every agent, their ACKs)',
    });
    emit(name(s, 'cpu_ms_per_change.simulated_agents'), f.agentsMsPerChange, {
      ...ctx,
      note: 'CPU of the simulated agents per create (same 2 vCPUs)',
    });
    const fan = await controlPlaneHistogram(s.cp.httpPort, 'fleetwall_sync_fanout_delay_seconds', s.access);
    if (fan)
      emit(name(s, 'ms.controlplane_fanout_mean'), (fan.sum / fan.count) * 1000, {
        ...ctx,
        note: 'commit -> delta written to every stream (control plane side)',
      });
  }
  if (tlsSide) {
    const t = prop.get('tls')!;
    const p = prop.get('plain')!;
    emitRatio('ratio.propagation_p99_tls_over_plain', t.perRoundP99, p.perRoundP99, pooled.get('tls')!.p99 / pooled.get('plain')!.p99, {
      target: '<= 1.2',
      agents: AGENTS,
      note: "per block: that block's p99 (of its changes' slowest agent)",
      p50_pooled: round2(pooled.get('tls')!.p50 / pooled.get('plain')!.p50),
    });
  }

  // Phase 4: the same creates while every fleet follows every revision (each window's backlog drained before the next).
  if (!SKIP_CREATE) {
    const rounds = Math.min(ROUNDS, 4);
    const c = await alternateWindows(sides, {
      rounds,
      windowSeconds: Math.max(3, Math.round(CREATE_SECONDS / 2)) / rounds,
      concurrency: CONCURRENCY,
      warmupSeconds: 0.5,
      after: async (s, last) => {
        const t = now();
        await waitAll(s.workers, AGENTS, [last], 300_000);
        return (now() - t) / 1000;
      },
    });
    for (const s of sides) {
      const f = c.get(s.name)!;
      emit(name(s, 'rules_per_second.create_1000_agents_following'), f.perSecond, {
        concurrency: CONCURRENCY,
        seconds: round2(f.seconds),
        agents_following: AGENTS,
        rounds,
        per_round: perRound(f.perRound),
        note: 'bounded by the fan-out: one delta to and one ACK from every agent per revision',
      });
      emit(name(s, 'seconds.create_backlog_drain'), Math.max(...f.after), {
        agents: AGENTS,
        median: round2(median(f.after)),
        note: 'after each window of those creates, until every agent has its last revision (the largest)',
      });
    }
    if (tlsSide) {
      const t = c.get('tls')!;
      const p = c.get('plain')!;
      emitRatio('ratio.create_1000_agents_following_tls_over_plain', t.perRound, p.perRound, t.perSecond / p.perSecond, {
        agents: AGENTS,
      });
    }
  }
  for (const s of sides) {
    const mem = rssMb(s.cp.pid);
    emit(name(s, 'mb.controlplane_rss_1000_agents'), mem.rss, { agents: AGENTS, note: 'with both fleets connected, each to its own' });
    emit(name(s, 'mb.controlplane_rss_peak'), mem.peak, { agents: AGENTS });
  }

  if (tlsSide) {
    const reports = await Promise.all(tlsSide.workers.map((w) => w.report()));
    emit('tls.handshakes_per_agent', reports.reduce((n, r) => n + r.handshakes, 0) / AGENTS, {
      agents: AGENTS,
      changes: CHANGES,
      note: 'TLS handshakes over the whole run / agents: 1 = one connection each, reused for every message',
    });
    emit('tls.handshakes_per_client', tlsSide.clientHandshakes(), {
      concurrency: CONCURRENCY,
      note: 'TLS handshakes of the one API client over every create of the run: 1 = one connection, reused',
    });
  }
}

async function timedEnroll(s: Side): Promise<Awaited<ReturnType<typeof enrollAgents>>> {
  const t = now();
  const nodes = await enrollAgents(s.cp, s.access!, AGENTS);
  emit(`seconds.enroll_agents${s.suffix}`, (now() - t) / 1000, {
    agents: AGENTS,
    note: 'a join token and an Enroll per node, 16 at a time',
  });
  return nodes;
}

/** What main starts and stops. */
interface Running {
  readonly sides: Side[];
  readonly tlsPlanes: ChildControlPlane[];
  readonly workers: Worker[];
  readonly dataDirs: string[];
}

async function stopFleets(run: Running): Promise<void> {
  for (const s of run.sides) for (const w of s.workers.splice(0)) await w.stop().catch(() => undefined);
}

async function main(): Promise<void> {
  log(
    `agents=${AGENTS} workers=${WORKERS} changes=${CHANGES} pace=${PACE_MS}ms rounds=${ROUNDS} import=${SKIP_IMPORT ? 0 : IMPORT} tls=${!SKIP_TLS}`,
  );
  const pg = await startTestPostgres({
    settings: { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on', shared_buffers: '256MB', max_wal_size: '4GB' },
  });
  let cp: ChildControlPlane | undefined;
  let clients: TestClients | undefined;
  const run: Running = { sides: [], tlsPlanes: [], workers: [], dataDirs: [] };
  try {
    cp = await startChildControlPlane(pg.url, {}, NODE_ARGS);
    log(`control plane pid ${cp.pid} on ${cp.target}`);
    clients = connectClients(cp.target);
    // On a signal the cleanup below runs at once; the phases start no more workers (checkpoints).
    await untilInterrupted(phases(pg, cp, clients, run));
  } finally {
    await stopFleets(run);
    for (const w of run.workers) await w.stop().catch(() => undefined);
    for (const s of run.sides) s.close();
    clients?.close();
    for (const p of run.tlsPlanes) await p.stop().catch(() => undefined);
    for (const d of run.dataDirs) rmSync(d, { recursive: true, force: true });
    await cp?.stop();
    await pg.stop();
  }
}

/** The measured phases; the workers and control planes they start are stopped by main. */
async function phases(
  pg: Awaited<ReturnType<typeof startTestPostgres>>,
  cp: ChildControlPlane,
  clients: TestClients,
  run: Running,
): Promise<void> {
  run.sides.push(openSide('plain', cp));
  if (!SKIP_TLS) {
    // The TLS side: a second control plane (own process, own database) with --tls, up at the same time.
    const dataDir = mkdtempSync(join(tmpdir(), 'fleetwall-bench-tls-'));
    run.dataDirs.push(dataDir);
    await checkpoint();
    const tlsCp = await startChildControlPlane(await pg.newDatabase(), { FLEETWALL_TLS: 'true', FLEETWALL_DATA_DIR: dataDir }, NODE_ARGS);
    run.tlsPlanes.push(tlsCp);
    log(`TLS control plane pid ${tlsCp.pid} on ${tlsCp.target}`);
    run.sides.push(
      openSide('tls', tlsCp, {
        ca: readFileSync(join(dataDir, 'pki/ca.crt')),
        // The API client writes rules and enrolls the simulated nodes; the nodes dial with their certificates.
        token: readFileSync(join(dataDir, 'admin.token'), 'utf8').trim(),
      }),
    );
  }
  await fleetCases(run.sides);
  // The import cases have the machine to themselves: no fleets, no TLS control plane.
  await stopFleets(run);
  for (const s of run.sides.splice(1)) s.close();
  for (const p of run.tlsPlanes.splice(0)) await p.stop();
  if (!SKIP_IMPORT) await importCases(cp, clients, IMPORT, run.workers);
}

runBench('bench:controlplane', main);
