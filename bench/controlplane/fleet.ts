// A simulated fleet: --workers child processes (agent-worker.ts) running the
// agents, driven over IPC; waitAll merges their per-revision arrival stats
// until every agent has the given revisions.
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sleep } from '../lib/interrupt.js';
import type { RevisionStat, WorkerCommand, WorkerEvent, WorkerTls } from './agent-worker.js';
import { benchNodeName, type EnrolledNodes } from './enroll-agents.js';

export class Worker {
  readonly proc: ChildProcess;
  private waiting: ((e: WorkerEvent) => void)[] = [];
  constructor() {
    this.proc = fork(fileURLToPath(new URL('./agent-worker.ts', import.meta.url)), [], {
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
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.send({ type: 'stop' });
    await exited;
  }
}

/**
 * `agents` simulated agents connected to `target` over `workers` processes,
 * each in sync (with `nodes`: dialing mutual TLS with their certificates);
 * how many streams had to be opened again on the way (agent-worker.ts).
 * The workers are pushed onto `into` as they start, so that whoever owns
 * that list stops them, even if this fails half-way.
 */
export async function startWorkers(
  target: string,
  agents: number,
  workers: number,
  into: Worker[],
  nodes?: EnrolledNodes,
  timeoutMs = 600_000,
): Promise<{ workers: Worker[]; retries: number }> {
  const ws = Array.from({ length: workers }, () => new Worker());
  into.push(...ws);
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
  let timer: NodeJS.Timeout | undefined;
  const events = await Promise.race([
    Promise.all(ready),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${agents} agents not all in sync after ${timeoutMs / 1000} s`)), timeoutMs);
    }),
  ]).finally(() => clearTimeout(timer));
  let retries = 0;
  for (const e of events) {
    if (e.type !== 'ready') throw new Error(`worker failed: ${JSON.stringify(e)}`);
    retries += e.retries;
  }
  return { workers: ws, retries };
}

/** Merged per-revision stats once every agent has `revs`. */
export async function waitAll(ws: Worker[], agents: number, revs: bigint[], timeoutMs: number): Promise<Map<string, RevisionStat>> {
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
