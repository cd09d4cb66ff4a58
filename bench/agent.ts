// npm run bench:agent — the node agent end to end, JSON lines on stdout:
//
//   ms.enforce_p50 / ms.enforce_p99   API call returned -> first packet from that
//                                     source dropped on the agent's veth (real
//                                     packets, sequence-numbered, 1 ms apart),
//                                     over >= 200 rule creations
//   seconds.snapshot_1m_apply         a fresh agent: Hello -> ACK of a 1,000,000-rule snapshot
//   mb.agent_rss_1m_rules             agent RSS with the 1M rules applied (steady, after settling)
//   (+ ms.unblock_p50/p99, ms.enforce_p99_1m_rules, mb.agent_rss_peak_1m_rules, seconds.restart_1m_ready
//   for context; each latency phase starts with 3 warm-up changes that are not counted)
//
// Real Postgres, a real control plane in this process, the agent as its own
// process in a network namespace. Options: --changes N (default 200),
// --rules N (default 1000000), --skip-snapshot, --skip-enforce, --skip-small,
// --node-args=<flag> (node flags for the agent process). SIGINT, SIGTERM or
// SIGHUP: the agent, its pins, the namespaces, the control plane and Postgres
// are cleaned up, then it ends by that signal (lib/interrupt.ts).
// Targets (issue 4): enforce p99 <= 150 ms; 1M snapshot <= 10 s; RSS <= 300 MB.

import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { ClientWritableStream, ServiceError } from '@grpc/grpc-js';
import { startTestPostgres, type TestPostgres } from '../test/support/postgres.js';
import { startTestControlPlane, type TestControlPlane } from '../test/support/control-plane.js';
import { createNetnsPair, type NetnsPair } from '../test/support/netns.js';
import { AgentProcess, UdsProxy } from '../test/support/agent-process.js';
import { ImportRulesRequest, type ImportRulesResponse } from '../proto/gen/fleetwall/v1/rule_service.js';
import { Action, Direction, Mode } from '../proto/gen/fleetwall/v1/rule.js';
import { createRule, deleteRule } from '../test/support/agent-e2e-rig.js';
import { SeqTraffic } from './agent/seq-traffic.js';
import { checkpoint, interruption, runBench, settleAfter, untilInterrupted } from './lib/interrupt.js';

const argv = process.argv.slice(2);
const opt = (name: string, def: number): number => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : def;
};
const CHANGES = opt('changes', 200);
const RULES = opt('rules', 1_000_000);
const SKIP_SNAPSHOT = argv.includes('--skip-snapshot');
const SKIP_ENFORCE = argv.includes('--skip-enforce');
/** Skips only the latency phase on a small rule set. */
const SKIP_SMALL = argv.includes('--skip-small');
/** Changes measured but not counted at the start of each latency phase (fresh sender processes, first paths). */
const WARMUP = 3;
/** Node flags for the agent process (e.g. --node-args=--max-semi-space-size=4). */
const NODE_ARGS = argv.filter((a) => a.startsWith('--node-args=')).map((a) => a.slice('--node-args='.length));

function emit(metric: string, value: number, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ metric, value, ...extra })}\n`);
}
const note = (msg: string): void => void process.stderr.write(`# ${msg}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const r1 = (x: number): number => Math.round(x * 10) / 10;

function procStatus(pid: number): { rssMb: number; hwmMb: number } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(st)![1]);
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
}

/** Upper bound (bucket) of the q-quantile of a Prometheus histogram in the agent's /metrics, ms. */
async function agentHistogramMs(agent: AgentProcess, name: string, q: number): Promise<number> {
  const text = await agent.metrics();
  const buckets: [number, number][] = [];
  for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)$`, 'gm')))
    buckets.push([m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]);
  const total = buckets.at(-1)?.[1] ?? 0;
  for (const [le, n] of buckets) if (n >= q * total) return le * 1000;
  return NaN;
}

/** RSS by kind of mapping (bpf maps mapped by the datapath, malloc heap, anonymous, the node binary, other files). */
function rssBreakdown(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let kind = 'anon';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1] ?? '';
      kind = name.includes('bpf-map')
        ? 'bpfMaps'
        : name === '[heap]'
          ? 'mallocHeap'
          : name === ''
            ? 'anon'
            : name.endsWith('/node')
              ? 'nodeBinary'
              : name.startsWith('[')
                ? 'other'
                : 'files';
      continue;
    }
    const m = /^Rss:\s+(\d+) kB/.exec(line);
    if (m) out[kind] = (out[kind] ?? 0) + Number(m[1]) / 1024;
  }
  for (const k of Object.keys(out)) out[k] = Math.round(out[k]!);
  return out;
}

async function waitMax(t: SeqTraffic, pred: (m: number) => boolean, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await t.maxReceived();
    if (pred(m)) return m;
    if (Date.now() > deadline) throw new Error('traffic did not reach the expected state');
    await sleep(5);
  }
}

/**
 * One measured change: create a deny for `src`, find the first packet that
 * did not arrive, its send time minus the moment the API call returned.
 */
async function measureBlock(
  cp: TestControlPlane,
  agent: AgentProcess,
  t: SeqTraffic,
  src: string,
): Promise<{ enforceMs: number; unblockMs: number }> {
  // Packets flow.
  const m0 = await t.maxReceived();
  await waitMax(t, (m) => m > m0 + 2);
  const created = await createRule(cp, `${src}/32`);
  const t0 = process.hrtime.bigint();
  await agent.waitHealth('applied', (h) => BigInt(h.appliedRevision) >= created.revision, 10_000);
  await sleep(40); // in-flight packets land
  const last = await t.maxReceived();
  await sleep(40);
  if ((await t.maxReceived()) !== last) throw new Error('packets still arriving after the rule was applied');
  const first = await t.sentAt(last + 1);
  if (first.at < 0n) throw new Error('first dropped packet not sent yet');
  const enforceMs = Number(first.at - t0) / 1e6;
  // Unblock: delete, then the first packet that passes again.
  await deleteRule(cp, created.rule.id);
  const t1 = process.hrtime.bigint();
  await waitMax(t, (m) => m > last, 10_000);
  const firstThrough = await t.firstReceivedFrom(last + 1);
  const unblockMs = Number((await t.sentAt(firstThrough)).at - t1) / 1e6;
  return { enforceMs, unblockMs };
}

async function importRules(cp: TestControlPlane, n: number): Promise<ImportRulesResponse> {
  let call!: ClientWritableStream<ImportRulesRequest>;
  const done = new Promise<ImportRulesResponse>((resolve, reject) => {
    call = cp.clients.rules.importRules((err: ServiceError | null, res?: ImportRulesResponse) => (err ? reject(err) : resolve(res!)));
  });
  const send = async (m: ImportRulesRequest): Promise<void> => {
    if (!call.write(m)) await new Promise<void>((r) => call.once('drain', () => r()));
  };
  await send(
    ImportRulesRequest.fromPartial({
      part: {
        $case: 'header',
        value: { action: Action.ACTION_DENY, direction: Direction.DIRECTION_INGRESS, mode: Mode.MODE_ENFORCE, comment: 'bench' },
      },
    }),
  );
  const half = Math.floor(n / 2);
  const dotted = (v: number): string => `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  let lines: string[] = [];
  for (let i = 0; i < n; i++) {
    // Half /32s under 11.0.0.0 (every 3rd address), half /24s from 16.0.0.0 (every other /24).
    lines.push(i < half ? dotted(0x0b000000 + i * 3) : `${dotted((0x10000000 + (i - half) * 512) >>> 0)}/24`);
    if (lines.length === 20_000) {
      await send(ImportRulesRequest.fromPartial({ part: { $case: 'chunk', value: { lines } } }));
      lines = [];
    }
  }
  if (lines.length) await send(ImportRulesRequest.fromPartial({ part: { $case: 'chunk', value: { lines } } }));
  call.end();
  return done;
}

async function main(): Promise<void> {
  emit('bench.context', 0, {
    cpus: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()),
    loadavg: readFileSync('/proc/loadavg', 'utf8').trim(),
    changes: CHANGES,
    rules: RULES,
  });
  const pg = await startTestPostgres();
  const cleanups: (() => unknown)[] = [() => pg.stop()];
  const cleanUp = async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()!();
      } catch (e) {
        note(`cleanup: ${(e as Error).message}`);
      }
    }
  };
  const work = phases(pg, cleanups);
  try {
    // On a signal the cleanups below run at once; the phases stop creating anything (checkpoints).
    await untilInterrupted(work);
  } finally {
    await cleanUp();
    if (interruption()) {
      // What a phase was starting when the signal came (an agent not yet ready) is cleaned up by it
      // when it fails, or goes on `cleanups` if it succeeded: wait for the phases to stop, then again.
      await settleAfter(work, 30_000);
      await cleanUp();
    }
  }
  emit('bench.done', 0, { loadavg: readFileSync('/proc/loadavg', 'utf8').trim() });
}

/** The measured phases; every resource goes on `cleanups` (run by main, last first). */
async function phases(pg: TestPostgres, cleanups: (() => unknown)[]): Promise<void> {
  if (!SKIP_ENFORCE && !SKIP_SMALL) {
    await checkpoint();
    const bed = createNetnsPair({ tag: 'bench-enforce' });
    cleanups.push(() => bed.destroy());
    const cp = await startTestControlPlane(await pg.newDatabase());
    cleanups.push(() => cp.stop());
    const link = await UdsProxy.start(cp.target);
    cleanups.push(() => link.close());
    await checkpoint();
    const agent = await AgentProcess.start({ bed, controlPlane: link.address, args: ['--log-level', 'warn'] });
    cleanups.push(() => agent.cleanup());
    await agent.waitHealth('in sync', (h) => h.syncState === 'in_sync');
    // A few background rules so the tables are not empty.
    for (let i = 0; i < 20; i++) await createRule(cp, `198.18.${i}.0/24`);
    const res = { enforce: [] as number[], unblock: [] as number[] };
    await runEnforce(cp, agent, bed, CHANGES, 'enforce', res);
    emit('ms.enforce_p50', r1(pct(res.enforce, 50)), { n: res.enforce.length });
    emit('ms.enforce_p99', r1(pct(res.enforce, 99)), {
      n: res.enforce.length,
      max: r1(Math.max(...res.enforce)),
      target: 150,
      agentApplyP99UpToMs: await agentHistogramMs(agent, 'fleetwall_agent_apply_seconds', 0.99),
      commitToAckP99UpToMs: await agentHistogramMs(agent, 'fleetwall_agent_propagation_seconds', 0.99),
    });
    emit('ms.unblock_p50', r1(pct(res.unblock, 50)), { n: res.unblock.length });
    emit('ms.unblock_p99', r1(pct(res.unblock, 99)), { n: res.unblock.length });
    while (cleanups.length > 1) await cleanups.pop()!();
  }
  if (!SKIP_SNAPSHOT) {
    await checkpoint();
    const bed = createNetnsPair({ tag: 'bench-snapshot' });
    cleanups.push(() => bed.destroy());
    const cp = await startTestControlPlane(await pg.newDatabase());
    cleanups.push(() => cp.stop());
    const t0 = Date.now();
    const imp = await importRules(cp, RULES);
    note(`imported ${imp.added} rules in ${((Date.now() - t0) / 1000).toFixed(1)} s (revision ${imp.revision})`);
    const link = await UdsProxy.start(cp.target);
    cleanups.push(() => link.close());
    await checkpoint();
    const agent = await AgentProcess.start({
      bed,
      controlPlane: link.address,
      counterInterval: '1s',
      args: ['--log-level', 'info'],
      nodeArgs: NODE_ARGS,
    });
    cleanups.push(() => agent.cleanup());
    const h = await agent.waitHealth(
      '1M snapshot applied',
      (x) => x.syncState === 'in_sync' && BigInt(x.appliedRevision) >= imp.revision,
      180_000,
    );
    const rec = agent.records(/^in sync: first ACK of the stream$/)[0];
    for (const r of agent.records(/^(snapshot received|applied|sync started|in sync: first ACK of the stream)$/)) {
      note(
        `agent: ${String(r.msg)} ${JSON.stringify({ t: r.time, ms: r.ms, planMs: r.planMs, receivedMs: r.receivedMs, helloToAckMs: r.helloToAckMs })}`,
      );
    }
    emit('seconds.snapshot_1m_apply', r1((h.lastSyncMs as number) / 1000), {
      rules: h.rulesInKernel,
      target: 10,
      log: rec ? { helloToAckMs: rec.helloToAckMs } : undefined,
    });
    for (let i = 0; i < 5; i++) {
      await sleep(1000);
      const hh = await agent.health();
      note(
        `agent memory: ${JSON.stringify(hh.memoryMb)} rss ${Math.round(procStatus(agent.pid!).rssMb)} counterReadMs ${String(hh.counterReadMs)} loop ${JSON.stringify(hh.eventLoopDelayMs)}`,
      );
    }
    const st = procStatus(agent.pid!);
    const hm = await agent.health();
    emit('mb.agent_rss_1m_rules', Math.round(st.rssMb), {
      rulesInKernel: h.rulesInKernel,
      peakMb: Math.round(st.hwmMb),
      target: 300,
      byMapping: rssBreakdown(agent.pid!),
      v8: hm.memoryMb,
    });
    emit('mb.agent_rss_peak_1m_rules', Math.round(st.hwmMb));
    // kill -9 with 1M rules: time until the restarted agent enforces (reads the pins back, applies the
    // difference) and until it is in sync again (resume, no snapshot).
    await agent.kill9();
    const tr = Date.now();
    await checkpoint();
    await agent.restart();
    const readyS = (Date.now() - tr) / 1000;
    const back = await agent.waitHealth('resumed', (x) => x.syncState === 'in_sync', 180_000);
    emit('seconds.restart_1m_ready', r1(readyS), {
      inSyncSeconds: r1((Date.now() - tr) / 1000),
      syncMode: back.lastSyncMode,
      rulesInKernel: back.rulesInKernel,
      peakMb: Math.round(procStatus(agent.pid!).hwmMb),
    });
    if (!SKIP_ENFORCE) {
      const res = { enforce: [] as number[], unblock: [] as number[] };
      await runEnforce(cp, agent, bed, 50, 'enforce with 1M rules', res);
      emit('ms.enforce_p99_1m_rules', r1(pct(res.enforce, 99)), {
        n: res.enforce.length,
        p50: r1(pct(res.enforce, 50)),
        max: r1(Math.max(...res.enforce)),
        maxAt: res.enforce.indexOf(Math.max(...res.enforce)),
        agentApplyP99UpToMs: await agentHistogramMs(agent, 'fleetwall_agent_apply_seconds', 0.99),
        commitToAckP99UpToMs: await agentHistogramMs(agent, 'fleetwall_agent_propagation_seconds', 0.99),
      });
    }
  }
}

async function runEnforce(
  cp: TestControlPlane,
  agent: AgentProcess,
  bed: NetnsPair,
  n: number,
  label: string,
  out: { enforce: number[]; unblock: number[] },
): Promise<void> {
  const src = bed.a.v4Extra[0]!;
  await checkpoint();
  const t = await SeqTraffic.start(bed, src, bed.b.v4, 1);
  let retries = 0;
  let warmup = WARMUP;
  try {
    while (out.enforce.length < n) {
      try {
        const r = await measureBlock(cp, agent, t, src);
        if (warmup > 0) {
          warmup--;
          const hw = await agent.health();
          note(
            `${label}: warm-up change ${r1(r.enforceMs)} ms (not counted; agent: commit->ACK ${String(hw.lastPropagationMs)} ms, last apply ${r1(Number(hw.lastApplyMs))} ms)`,
          );
          continue;
        }
        out.enforce.push(r.enforceMs);
        out.unblock.push(r.unblockMs);
        if (out.enforce.length % 50 === 0)
          note(`${label}: ${out.enforce.length}/${n}, p50 ${r1(pct(out.enforce, 50))} ms, p99 ${r1(pct(out.enforce, 99))} ms`);
      } catch (e) {
        if (++retries > 20) throw e;
        note(`retrying a change: ${(e as Error).message}`);
      }
    }
  } finally {
    t.stop();
  }
}

runBench('bench:agent', main);
