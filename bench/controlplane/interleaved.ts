// The measured cases, run side by side: every side (plaintext, TLS) in
// each round, in ABBA order (rounds.ts), so that both see the same machine.
//
//   alternateWindows      windows of calls (creates, or health checks),
//                         plain/tls, tls/plain, ...; per side the rate of each
//                         window, the overall rate and the CPU per call of the
//                         control plane and of this process (the API client);
//                         `after` runs after each window outside the timing
//                         (e.g. waiting for the fleet)
//   alternatePropagation  blocks of paced single creates, each side's block
//                         followed until its whole fleet has them; per change the
//                         slowest and the first agent, per block its p99
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { checkpoint, sleep } from '../lib/interrupt.js';
import { waitAll } from './fleet.js';
import { cpuMs, ownCpuMs } from './proc-stats.js';
import { percentile, roundOrder, type SideName } from './rounds.js';
import { type BurstOf, createBurst, type Side } from './side.js';

export interface WindowFigures {
  /** Creates per second of each window, by round. */
  readonly perRound: number[];
  /** Over all windows: creates / seconds. */
  readonly perSecond: number;
  readonly seconds: number;
  readonly made: number;
  /** Control-plane and API-client (this process) CPU per call, ms. */
  readonly cpMsPerCall: number;
  readonly clientMsPerCall: number;
  /** What `after` returned per round. */
  readonly after: number[];
}

export async function alternateWindows(
  sides: readonly Side[],
  o: {
    /** What a window runs (default: single-rule creates). */
    readonly burst?: BurstOf;
    readonly rounds: number;
    readonly windowSeconds: number;
    readonly concurrency: number;
    /** An unmeasured window per side first (JIT, connections, caches). */
    readonly warmupSeconds: number;
    readonly after?: (side: Side, last: bigint) => Promise<number>;
  },
): Promise<Map<SideName, WindowFigures>> {
  const run = o.burst ?? createBurst;
  const acc = new Map(
    sides.map((s) => [s.name, { perRound: [] as number[], made: 0, seconds: 0, cp: 0, client: 0, after: [] as number[] }]),
  );
  for (const s of sides) {
    const b = await run(s, o.concurrency, o.warmupSeconds);
    if (o.after) await o.after(s, b.last);
  }
  for (let r = 0; r < o.rounds; r++) {
    for (const s of roundOrder(sides, r)) {
      await checkpoint();
      const a = acc.get(s.name)!;
      const cp0 = cpuMs(s.cp.pid);
      const me0 = ownCpuMs();
      const b = await run(s, o.concurrency, o.windowSeconds);
      a.cp += cpuMs(s.cp.pid) - cp0;
      a.client += ownCpuMs() - me0;
      a.perRound.push(b.made / b.elapsed);
      a.made += b.made;
      a.seconds += b.elapsed;
      if (o.after) a.after.push(await o.after(s, b.last));
    }
  }
  const out = new Map<SideName, WindowFigures>();
  for (const [name, a] of acc)
    out.set(name, {
      perRound: a.perRound,
      perSecond: a.made / a.seconds,
      seconds: a.seconds,
      made: a.made,
      cpMsPerCall: a.cp / a.made,
      clientMsPerCall: a.client / a.made,
      after: a.after,
    });
  return out;
}

export interface PropagationFigures {
  /** Per change, in order: commit -> the slowest agent has it, ms. */
  readonly slowest: number[];
  /** Per change: commit -> the first agent has it, ms. */
  readonly first: number[];
  /** Mean over (change, agent) pairs, ms. */
  readonly meanAgent: number;
  /** Per block (round): the p99 of its changes' slowest. */
  readonly perRoundP99: number[];
  /** CPU over this side's blocks per change, ms: the control plane, its fleet's workers. */
  readonly cpMsPerChange: number;
  readonly agentsMsPerChange: number;
}

export async function alternatePropagation(
  sides: readonly Side[],
  o: { readonly blocks: readonly number[]; readonly paceMs: number; readonly agents: number },
): Promise<Map<SideName, PropagationFigures>> {
  const acc = new Map(
    sides.map((s) => [s.name, { slowest: [] as number[], first: [] as number[], sum: 0, perRound: [] as number[], cp: 0, agents: 0 }]),
  );
  for (let r = 0; r < o.blocks.length; r++) {
    for (const s of roundOrder(sides, r)) {
      await checkpoint();
      const a = acc.get(s.name)!;
      const cp0 = cpuMs(s.cp.pid);
      const ag0 = s.workers.reduce((n, w) => n + cpuMs(w.proc.pid!), 0);
      const revs: bigint[] = [];
      for (let i = 0; i < o.blocks[r]!; i++) {
        const res = await s.api.create({ rule: { cidr: s.nextCidr(), action: Action.ACTION_DENY, comment: 'bench propagation' } });
        revs.push(res.revision);
        await sleep(o.paceMs);
      }
      const stats = await waitAll(s.workers, o.agents, revs, 120_000);
      a.cp += cpuMs(s.cp.pid) - cp0;
      a.agents += s.workers.reduce((n, w) => n + cpuMs(w.proc.pid!), 0) - ag0;
      const block = revs.map((rev) => stats.get(rev.toString())!);
      a.slowest.push(...block.map((x) => x.maxMs));
      a.first.push(...block.map((x) => x.minMs));
      a.sum += block.reduce((n, x) => n + x.sumMs, 0);
      a.perRound.push(
        percentile(
          block.map((x) => x.maxMs).sort((x, y) => x - y),
          99,
        ),
      );
    }
  }
  const out = new Map<SideName, PropagationFigures>();
  for (const [name, a] of acc)
    out.set(name, {
      slowest: a.slowest,
      first: a.first,
      meanAgent: a.sum / (a.slowest.length * o.agents),
      perRoundP99: a.perRound,
      cpMsPerChange: a.cp / a.slowest.length,
      agentsMsPerChange: a.agents / a.slowest.length,
    });
  return out;
}
