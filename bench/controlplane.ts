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
//    ms.controlplane_fanout_mean, cpu_ms_per_change.*, seconds.create_backlog_drain,
//    ms.expiry_to_agent_max, mb.controlplane_rss_peak, mb.controlplane_rss_1m_rules)
//
//   The same fleet cases again against a second control plane with TLS on (issue 15;
//   FLEETWALL_TLS, own PKI): the API client dials TLS and sends an API token, the simulated
//   agents are enrolled first (a join token each, seconds.enroll_agents_tls) and dial mutual
//   TLS with their own node certificates,
//   in the same run, each metric with the suffix _tls, then side by side:
//   ratio.propagation_p99_tls_over_plain, ratio.create_tls_over_plain (target <= 1.2 and
//   >= 1/1.2), tls.handshakes_per_agent and tls.handshakes_per_client (1: connections are
//   reused, not redone per call or per message). --skip-tls leaves them out.
//
// Real Postgres (embedded, fsync on), the control plane as its own process
// (child), the agents as real gRPC clients (own HTTP/2 connection each)
// spread over --workers child processes. Commit times come from the
// revision's commit_time (Postgres clock_timestamp(), ms precision in the
// Delta; arrival is sub-ms wall clock on the same host). SIGINT, SIGTERM or
// SIGHUP: the workers, the control planes and Postgres are stopped, then it
// ends by that signal (lib/interrupt.ts).
// Options: --agents 1000 --workers 2 --changes 250 --pace-ms 20 --create-seconds 10
//          --concurrency 16 --import 1000000 --skip-import --skip-create --skip-tls --cp-prof DIR
// Smallest run that exercises every case: --agents 10 --workers 1 --changes 5 --pace-ms 20
//          --create-seconds 1 --skip-import
// Targets (issue 3): p99 <= 100 ms at 1,000 agents; 1M import committed <= 20 s and
// received <= 30 s; RSS <= 1 GB at 1,000 agents.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { get as httpsGet } from 'node:https';
import { checkServerIdentity } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { RuleServiceClient } from '../proto/gen/fleetwall/v1/rule_service.js';
import { ImportRulesRequest, type ImportRulesResponse } from '../proto/gen/fleetwall/v1/rule_service.js';
import { Action } from '../proto/gen/fleetwall/v1/rule.js';
import {
  bearerInterceptor,
  type ChildControlPlane,
  connectClients,
  startChildControlPlane,
  type TestClients,
  unaryCall,
} from '../test/support/control-plane.js';
import { startTestPostgres } from '../test/support/postgres.js';
import { rulesApi } from '../test/support/rule-fixtures.js';
import { SyncClient } from '../test/support/scripted-agent.js';
import type { RevisionStat, WorkerCommand, WorkerEvent, WorkerTls } from './controlplane/agent-worker.js';
import { CreateJoinTokenRequest, EnrollRequest } from '../proto/gen/fleetwall/v1/enrollment_service.js';
import { createCsr } from '../control-plane/src/pki/certificate-authority.js';
import { checkpoint, runBench, untilInterrupted } from './lib/interrupt.js';

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
const CONCURRENCY = opt('concurrency', 16);
const IMPORT = opt('import', 1_000_000);
const SKIP_IMPORT = argv.includes('--skip-import');
const SKIP_CREATE = argv.includes('--skip-create');
const SKIP_TLS = argv.includes('--skip-tls');
/** --cp-prof DIR: CPU profile of the control-plane process, written when it exits. */
const CP_PROF = argv.includes('--cp-prof') ? argv[argv.indexOf('--cp-prof') + 1] : undefined;

const now = () => performance.timeOrigin + performance.now();
const log = (msg: string) => process.stderr.write(`[bench:controlplane] ${msg}\n`);
function emit(metric: string, value: number, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ metric, value: Math.round(value * 100) / 100, ...extra })}\n`);
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** utime + stime of a process, ms. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / 100;
}

function rssMb(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** GET /metrics (HTTPS with the token when the control plane has TLS on). */
function metricsText(httpPort: number, access?: Access): Promise<string> {
  if (!access) return fetch(`http://127.0.0.1:${httpPort}/metrics`).then((r) => r.text());
  return new Promise((resolve, reject) => {
    const req = httpsGet(
      {
        host: '127.0.0.1',
        port: httpPort,
        path: '/metrics',
        ca: access.ca,
        servername: 'localhost',
        headers: { authorization: `Bearer ${access.token}` },
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', reject);
  });
}

async function controlPlaneHistogram(httpPort: number, name: string, access?: Access): Promise<{ sum: number; count: number } | undefined> {
  const text = await metricsText(httpPort, access);
  const sum = new RegExp(`^${name}_sum\\{[^}]*\\} ([0-9.e+-]+)$`, 'm').exec(text)?.[1];
  const count = new RegExp(`^${name}_count\\{[^}]*\\} ([0-9.e+-]+)$`, 'm').exec(text)?.[1];
  return sum && count ? { sum: Number(sum), count: Number(count) } : undefined;
}

class Worker {
  readonly proc: ChildProcess;
  private waiting: ((e: WorkerEvent) => void)[] = [];
  constructor() {
    this.proc = fork(fileURLToPath(new URL('./controlplane/agent-worker.ts', import.meta.url)), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.proc.on('message', (e: WorkerEvent) => {
      const w = this.waiting.shift();
      w?.(e);
    });
  }
  send(c: WorkerCommand): void {
    this.proc.send(c);
  }
  next(): Promise<WorkerEvent> {
    return new Promise((r) => this.waiting.push(r));
  }
  async report(): Promise<{ revisions: RevisionStat[]; ended: number; handshakes: number }> {
    const p = this.next();
    this.send({ type: 'report' });
    const e = await p;
    if (e.type !== 'report') throw new Error(`unexpected ${e.type}`);
    return e;
  }
  async stop(): Promise<void> {
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.send({ type: 'stop' });
    await exited;
  }
}

/** TLS and the API token to send (the TLS cases), or plaintext. */
interface Access {
  readonly ca: Buffer;
  readonly token: string;
}

const benchNodeName = (i: number): string => `bench-node-${String(i).padStart(5, '0')}`;

/**
 * Enrolls `agents` simulated nodes as real ones are (a join token each, with
 * the labels they would say in Hello, then Enroll with a CSR): their node
 * certificates. One key for all: they are simulations, and the control plane
 * names each certificate after the token's enrollment, not the key.
 */
async function enrollAgents(
  cp: ChildControlPlane,
  access: Access,
  agents: number,
): Promise<Omit<WorkerTls, 'nodes'> & { certs: string[] }> {
  const { csrPem, keyPem } = await createCsr('bench-node');
  const admin = connectClients(cp.target, { ca: access.ca, token: access.token });
  const anon = connectClients(cp.target, { ca: access.ca });
  const certs: string[] = new Array(agents);
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < agents; i = next++) {
          const name = benchNodeName(i);
          const jt = await unaryCall(
            admin.enrollment,
            'createJoinToken',
            CreateJoinTokenRequest.fromPartial({ nodeName: name, labels: { env: 'bench', host: name } }),
          );
          const res = await unaryCall(
            anon.enrollment,
            'enroll',
            EnrollRequest.fromPartial({ joinToken: jt.token, nodeName: name, csrPem }),
          );
          certs[i] = res.certificatePem;
        }
      }),
    );
  } finally {
    admin.close();
    anon.close();
  }
  return { ca: access.ca.toString('utf8'), keyPem, certs };
}

async function startWorkers(
  target: string,
  agents: number,
  workers: number,
  nodes?: Awaited<ReturnType<typeof enrollAgents>>,
): Promise<Worker[]> {
  const ws = Array.from({ length: workers }, () => new Worker());
  const per = Math.ceil(agents / workers);
  const ready = ws.map((w) => w.next());
  ws.forEach((w, i) => {
    const count = Math.min(per, agents - i * per);
    const tls: WorkerTls | undefined = nodes && {
      ca: nodes.ca,
      keyPem: nodes.keyPem,
      nodes: Array.from({ length: count }, (_, k) => ({ name: benchNodeName(i * per + k), certPem: nodes.certs[i * per + k]! })),
    };
    w.send({ type: 'start', target, count, offset: i * per, connectPerSecond: 250, ...(tls ? { tls } : {}) });
  });
  const events = await Promise.all(ready);
  for (const e of events) if (e.type !== 'ready') throw new Error(`worker failed: ${JSON.stringify(e)}`);
  return ws;
}

/** Merged per-revision stats once every agent has `rev`. */
async function waitAll(ws: Worker[], agents: number, revs: bigint[], timeoutMs: number): Promise<Map<string, RevisionStat>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reports = await Promise.all(ws.map((w) => w.report()));
    const merged = new Map<string, RevisionStat>();
    for (const r of reports) {
      for (const s of r.revisions) {
        const m = merged.get(s.revision);
        if (!m) merged.set(s.revision, { ...s });
        else {
          m.count += s.count;
          m.sumMs += s.sumMs;
          m.maxMs = Math.max(m.maxMs, s.maxMs);
          m.minMs = Math.min(m.minMs, s.minMs);
          m.lastArrival = Math.max(m.lastArrival, s.lastArrival);
        }
      }
    }
    const missing = revs.filter((r) => (merged.get(r.toString())?.count ?? 0) < agents);
    if (missing.length === 0) return merged;
    if (Date.now() > deadline) {
      const ended = reports.reduce((n, r) => n + r.ended, 0);
      throw new Error(
        `${missing.length} revisions not at every agent after ${timeoutMs}ms (first ${missing[0]}: ${merged.get(missing[0]!.toString())?.count ?? 0}/${agents}; streams ended: ${ended})`,
      );
    }
    await sleep(250);
  }
}

/** `concurrency` callers each issuing CreateRule back to back for `seconds`. */
async function createBurst(
  api: ReturnType<typeof rulesApi>,
  base: number,
  concurrency: number,
  seconds: number,
): Promise<{ perSecond: number; last: bigint; elapsed: number }> {
  let made = 0;
  let last = 0n;
  const t = now();
  const stopAt = t + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = 0; now() < stopAt; i++) {
        const n = w * 100_000 + i;
        const r = await api.create({
          rule: { cidr: `${base}.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}/32`, action: Action.ACTION_DENY },
        });
        made++;
        if (r.revision > last) last = r.revision;
      }
    }),
  );
  const elapsed = (now() - t) / 1000;
  return { perSecond: made / elapsed, last, elapsed };
}

/** What the TLS cases are compared on. */
interface FleetFigures {
  readonly p99: number;
  readonly create: number;
}

/**
 * Phases 1-4 against `cp`: creates with nobody following, the fleet
 * connecting, propagation of single creates to every agent, creates with
 * the fleet following, RSS. Metric names end in `suffix` ("" or "_tls").
 * With `access`, every client dials TLS and sends the token; handshakes
 * are counted at the agents and at the API client.
 */
async function fleetCases(cp: ChildControlPlane, suffix: string, access?: Access): Promise<FleetFigures> {
  let clientHandshakes = 0;
  const clients = access
    ? {
        rules: new RuleServiceClient(
          cp.target,
          credentials.createSsl(access.ca, null, null, {
            checkServerIdentity: (host, cert) => {
              clientHandshakes++;
              return checkServerIdentity(host, cert);
            },
          }),
          { interceptors: [bearerInterceptor(access.token)] },
        ),
        close() {
          this.rules.close();
        },
      }
    : connectClients(cp.target);
  const api = rulesApi(clients.rules, 'bench');
  const workers: Worker[] = [];
  const name = (m: string) => `${m}${suffix}`;
  let create = Number.NaN;
  try {
    // Phase 1: single-rule creates through the API (API + store + commit; nobody following yet).
    if (!SKIP_CREATE) {
      const b = await createBurst(api, suffix ? 21 : 11, CONCURRENCY, CREATE_SECONDS);
      create = b.perSecond;
      emit(name('rules_per_second.create'), b.perSecond, {
        concurrency: CONCURRENCY,
        seconds: Math.round(b.elapsed * 10) / 10,
        agents_following: 0,
      });
    }

    // Phase 2: the fleet connects (with TLS: each simulated node enrolled first, then dialing mutual TLS with its certificate).
    let nodes: Awaited<ReturnType<typeof enrollAgents>> | undefined;
    if (access) {
      const te = now();
      nodes = await enrollAgents(cp, access, AGENTS);
      emit(name('seconds.enroll_agents'), (now() - te) / 1000, {
        agents: AGENTS,
        note: 'a join token and an Enroll per node, 16 at a time',
      });
    }
    const t = now();
    await checkpoint();
    workers.push(...(await startWorkers(cp.target, AGENTS, WORKERS, nodes)));
    emit(name('seconds.connect_1000_agents'), (now() - t) / 1000, { agents: AGENTS });
    await sleep(1000);
    const idle0 = cpuMs(cp.pid);
    await sleep(5000);
    emit(name('cpu_percent.controlplane_idle_1000_agents'), ((cpuMs(cp.pid) - idle0) / 5000) * 100, {
      agents: AGENTS,
      note: 'pings, node flushes, expiry polls with no changes',
    });

    // Phase 3: propagation of single creates.
    const cpu0 = cpuMs(cp.pid);
    const agentCpu0 = workers.reduce((n, w) => n + cpuMs(w.proc.pid!), 0);
    const revs: bigint[] = [];
    for (let i = 0; i < CHANGES; i++) {
      const r = await api.create({
        rule: { cidr: `${suffix ? 14 : 10}.${(i >> 8) & 255}.${i & 255}.0/24`, action: Action.ACTION_DENY, comment: 'bench propagation' },
      });
      revs.push(r.revision);
      await sleep(PACE_MS);
    }
    const stats = await waitAll(workers, AGENTS, revs, 120_000);
    const cpPerChange = (cpuMs(cp.pid) - cpu0) / CHANGES;
    const agentsPerChange = (workers.reduce((n, w) => n + cpuMs(w.proc.pid!), 0) - agentCpu0) / CHANGES;
    const perChange = revs.map((r) => stats.get(r.toString())!.maxMs).sort((a, b) => a - b);
    const meanAgent = revs.reduce((s, r) => s + stats.get(r.toString())!.sumMs, 0) / (revs.length * AGENTS);
    const ctx = { agents: AGENTS, changes: CHANGES, pace_ms: PACE_MS };
    const p99 = percentile(perChange, 99);
    emit(name('ms.propagation_p50'), percentile(perChange, 50), ctx);
    emit(name('ms.propagation_p99'), p99, ctx);
    emit(name('ms.propagation_max'), perChange[perChange.length - 1]!, ctx);
    emit(name('ms.propagation_mean'), meanAgent, { ...ctx, note: 'mean over (change, agent) pairs' });
    const first = revs.map((r) => stats.get(r.toString())!.minMs).sort((a, b) => a - b);
    emit(name('ms.propagation_first_agent_p50'), percentile(first, 50), { ...ctx, note: 'commit -> the FIRST agent has it' });
    emit(name('cpu_ms_per_change.controlplane'), cpPerChange, {
      ...ctx,
      note: 'control-plane CPU per create (API, commit, fan-out to every agent, their ACKs)',
    });
    emit(name('cpu_ms_per_change.simulated_agents'), agentsPerChange, {
      ...ctx,
      note: 'CPU of the simulated agents per create (same 2 vCPUs)',
    });
    const fan = await controlPlaneHistogram(cp.httpPort, 'fleetwall_sync_fanout_delay_seconds', access);
    if (fan)
      emit(name('ms.controlplane_fanout_mean'), (fan.sum / fan.count) * 1000, {
        ...ctx,
        note: 'commit -> delta written to every stream (control plane side)',
      });

    // Phase 4: the same creates while 1,000 agents follow every revision.
    if (!SKIP_CREATE) {
      const b = await createBurst(api, suffix ? 23 : 13, CONCURRENCY, Math.max(3, Math.round(CREATE_SECONDS / 2)));
      emit(name('rules_per_second.create_1000_agents_following'), b.perSecond, {
        concurrency: CONCURRENCY,
        seconds: Math.round(b.elapsed * 10) / 10,
        agents_following: AGENTS,
        note: 'bounded by the fan-out: one delta to and one ACK from every agent per revision',
      });
      const t2 = now();
      await waitAll(workers, AGENTS, [b.last], 300_000);
      emit(name('seconds.create_backlog_drain'), (now() - t2) / 1000, {
        agents: AGENTS,
        note: 'after that burst, until every agent has the last revision',
      });
    }
    const mem = rssMb(cp.pid);
    emit(name('mb.controlplane_rss_1000_agents'), mem.rss, { agents: AGENTS });
    emit(name('mb.controlplane_rss_peak'), mem.peak, { agents: AGENTS });

    if (access) {
      const reports = await Promise.all(workers.map((w) => w.report()));
      const agentHandshakes = reports.reduce((n, r) => n + r.handshakes, 0);
      emit('tls.handshakes_per_agent', agentHandshakes / AGENTS, {
        agents: AGENTS,
        changes: CHANGES,
        note: 'TLS handshakes over the whole run / agents: 1 = one connection each, reused for every message',
      });
      emit('tls.handshakes_per_client', clientHandshakes, {
        concurrency: CONCURRENCY,
        note: 'TLS handshakes of the one API client over every create of the run: 1 = one connection, reused',
      });
    }
    return { p99, create };
  } finally {
    for (const w of workers) await w.stop().catch(() => undefined);
    clients.close();
  }
}

async function main(): Promise<void> {
  log(`agents=${AGENTS} workers=${WORKERS} changes=${CHANGES} pace=${PACE_MS}ms import=${SKIP_IMPORT ? 0 : IMPORT} tls=${!SKIP_TLS}`);
  const pg = await startTestPostgres({
    settings: { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on', shared_buffers: '256MB', max_wal_size: '4GB' },
  });
  let cp: ChildControlPlane | undefined;
  let clients: TestClients | undefined;
  const workers: Worker[] = [];
  const tlsPlanes: ChildControlPlane[] = [];
  try {
    cp = await startChildControlPlane(pg.url, {}, CP_PROF ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${CP_PROF}`] } : {});
    log(`control plane pid ${cp.pid} on ${cp.target}`);
    clients = connectClients(cp.target);
    // On a signal the cleanup below runs at once; the phases start no more workers (checkpoints).
    await untilInterrupted(phases(pg, cp, clients, workers, tlsPlanes));
  } finally {
    for (const w of workers) await w.stop().catch(() => undefined);
    clients?.close();
    for (const p of tlsPlanes) await p.stop().catch(() => undefined);
    await cp?.stop();
    await pg.stop();
  }
}

/** The measured phases; the workers and control planes they start are stopped by main. */
async function phases(
  pg: Awaited<ReturnType<typeof startTestPostgres>>,
  cp: ChildControlPlane,
  clients: TestClients,
  workers: Worker[],
  tlsPlanes: ChildControlPlane[],
): Promise<void> {
  const api = rulesApi(clients.rules, 'bench');
  {
    const plain = await fleetCases(cp, '');

    if (!SKIP_TLS) {
      // The same cases with TLS and tokens on: a second control plane (own process, own database) with --tls.
      const dataDir = mkdtempSync(join(tmpdir(), 'fleetwall-bench-tls-'));
      await checkpoint();
      const tlsCp = await startChildControlPlane(await pg.newDatabase(), { FLEETWALL_TLS: 'true', FLEETWALL_DATA_DIR: dataDir });
      tlsPlanes.push(tlsCp);
      try {
        log(`TLS control plane pid ${tlsCp.pid} on ${tlsCp.target}`);
        const access = {
          ca: readFileSync(join(dataDir, 'pki/ca.crt')),
          // The API client writes rules and enrolls the simulated nodes; the nodes dial with their certificates.
          token: readFileSync(join(dataDir, 'admin.token'), 'utf8').trim(),
        };
        const tls = await fleetCases(tlsCp, '_tls', access);
        emit('ratio.propagation_p99_tls_over_plain', tls.p99 / plain.p99, { target: '<= 1.2', agents: AGENTS });
        if (!SKIP_CREATE)
          emit('ratio.create_tls_over_plain', tls.create / plain.create, { target: '>= 0.83 (1/1.2)', concurrency: CONCURRENCY });
      } finally {
        await tlsCp.stop();
        tlsPlanes.splice(tlsPlanes.indexOf(tlsCp), 1);
        rmSync(dataDir, { recursive: true, force: true });
      }
    }

    if (!SKIP_IMPORT) {
      // Expiry: rules with a 1 s ttl, deleted at an agent how long after their expiry.
      const one = new SyncClient(cp.target, { nodeName: 'bench-expiry' }).connect();
      await one.waitInSync();
      const batch = await api.batchCreate({
        requests: Array.from({ length: 100 }, (_, i) => ({
          rule: { cidr: `12.0.${i}.0/24`, action: Action.ACTION_DENY },
          ttl: { seconds: 1n, nanos: 0 },
        })),
      });
      await one.waitRevision(batch.revision);
      const ids = new Set(batch.rules.map((r) => r.id));
      const expireAt = Math.max(...batch.rules.map((r) => r.expireTime!.getTime()));
      await one.waitFor((c) => [...ids].every((id) => !c.rules.has(id)), 'expiry deletes', 30_000);
      const del = one.deltas.filter((d) => d.delta.deletes.some((id) => ids.has(id)));
      emit('ms.expiry_to_agent_max', Math.max(...del.map((d) => d.receivedAt)) - expireAt, {
        rules: 100,
        note: 'expire_time -> delete delta at an agent (sweep every 200 ms)',
      });
      one.close();

      // Phase 5: a 1M-line import, one agent connected.
      await checkpoint();
      const [w] = await startWorkers(cp.target, 1, 1);
      workers.push(w!);
      const half = Math.floor(IMPORT / 2);
      const line = (i: number) => {
        if (i < half) {
          const v = (0x50000000 + i * 3) >>> 0;
          return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
        }
        const v = (0x10000000 + (i - half) * 512) >>> 0;
        return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.0/24`;
      };
      const t = now();
      const md = new Metadata();
      md.set('x-fleetwall-actor', 'bench');
      const res = await new Promise<ImportRulesResponse>((resolve, reject) => {
        const call = clients.rules.importRules(md, (err: ServiceError | null, r?: ImportRulesResponse) =>
          err ? reject(err) : resolve(r!),
        );
        const write = (m: ImportRulesRequest) =>
          call.write(m) ? Promise.resolve() : new Promise<void>((r) => call.once('drain', () => r()));
        (async () => {
          await write(
            ImportRulesRequest.fromPartial({ part: { $case: 'header', value: { action: Action.ACTION_DENY, comment: 'bench import' } } }),
          );
          const CH = 16384;
          for (let i = 0; i < IMPORT; i += CH) {
            const lines: string[] = [];
            for (let j = i; j < Math.min(IMPORT, i + CH); j++) lines.push(line(j));
            await write(ImportRulesRequest.fromPartial({ part: { $case: 'chunk', value: { lines } } }));
          }
          call.end();
        })().catch(reject);
      });
      const commitS = (now() - t) / 1000;
      if (res.added !== BigInt(IMPORT)) throw new Error(`import added ${res.added} of ${IMPORT}`);
      const got = await waitAll([w!], 1, [res.revision], 300_000);
      const received = (got.get(res.revision.toString())!.lastArrival - t) / 1000;
      emit('seconds.import_1m_commit', commitS, { prefixes: IMPORT });
      emit('seconds.import_1m_received', received, { prefixes: IMPORT, agents: 1 });
      await sleep(2000);
      emit('mb.controlplane_rss_1m_rules', rssMb(cp.pid).rss, { rules: IMPORT });
    }
  }
}

runBench('bench:controlplane', main);
