// fleetwall counters [--watch] [--node n] [--top n] [--interval 1s] [--count n]
// A table of fleet, per-node and top-rule counters; with --watch a live table
// redrawn at each push from CounterService.WatchCounters, with rates.
import type { ServiceError } from '@grpc/grpc-js';
import type { VerdictCounters } from '../../../proto/gen/fleetwall/v1/counter.js';
import {
  CounterQuery,
  CounterSnapshot,
  GetCountersRequest,
  WatchCountersRequest,
} from '../../../proto/gen/fleetwall/v1/counter_service.js';
import { flagBool, flagString, parseArgs, parseDurationSeconds, parsePositiveInt, UsageError } from '../args.js';
import { toCliError, unary } from '../client.js';
import type { Context } from '../context.js';
import { count, table } from '../output.js';
import { durationFromSeconds } from './block.js';

type Snap = CounterSnapshot;

function rate(now: bigint, prev: bigint | undefined, seconds: number): string {
  if (prev === undefined || seconds <= 0) return '-';
  const r = Number(now - prev) / seconds;
  return r >= 1e6 ? `${(r / 1e6).toFixed(1)}M` : r >= 1e3 ? `${(r / 1e3).toFixed(1)}k` : r.toFixed(0);
}

/** Totals of nothing (a node or rule with no report yet). */
export const ZERO_COUNTERS: VerdictCounters = {
  passPackets: 0n,
  passBytes: 0n,
  dropPackets: 0n,
  dropBytes: 0n,
  wouldDropPackets: 0n,
  wouldDropBytes: 0n,
};

export function renderCounters(s: Snap, prev: Snap | undefined): string {
  const dt = prev?.collectTime && s.collectTime ? (s.collectTime.getTime() - prev.collectTime.getTime()) / 1000 : 0;
  const prevNodes = new Map(prev?.nodes.map((n) => [n.nodeName, n.totals ?? ZERO_COUNTERS]));
  const prevRules = new Map(prev?.rules.map((r) => [`${r.nodeName}/${r.ruleId}`, r.packets]));
  const f = s.fleet ?? ZERO_COUNTERS;
  const pf = prev?.fleet;
  const rows = [
    [
      'fleet',
      count(f.passPackets),
      count(f.dropPackets),
      count(f.wouldDropPackets),
      rate(f.dropPackets, pf?.dropPackets, dt),
      rate(f.passPackets, pf?.passPackets, dt),
    ],
    ...s.nodes.map((n) => {
      const t = n.totals ?? ZERO_COUNTERS;
      const p = prevNodes.get(n.nodeName);
      return [
        n.nodeName,
        count(t.passPackets),
        count(t.dropPackets),
        count(t.wouldDropPackets),
        rate(t.dropPackets, p?.dropPackets, dt),
        rate(t.passPackets, p?.passPackets, dt),
      ];
    }),
  ];
  const parts = [table(['SCOPE', 'PASS', 'DROP', 'WOULD-DROP', 'DROP/S', 'PASS/S'], rows)];
  if (s.rules.length > 0) {
    parts.push(
      '',
      table(
        ['RULE', 'CIDR', 'NODE', 'PACKETS', 'BYTES', 'PKTS/S'],
        s.rules.map((r) => [
          r.ruleId.toString(),
          r.cidr || '(deleted)',
          r.nodeName || 'fleet',
          count(r.packets),
          count(r.bytes),
          rate(r.packets, prevRules.get(`${r.nodeName}/${r.ruleId}`), dt),
        ]),
      ),
    );
  }
  parts.push(`at ${s.collectTime?.toISOString() ?? '-'}`);
  return parts.join('\n');
}

export async function countersCommand(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, { booleans: ['watch'], values: ['node', 'top', 'interval', 'count'] });
  if (p.positionals.length > 0)
    throw new UsageError('usage: fleetwall counters [--watch] [--node name] [--top n] [--interval 1s] [--count n]');
  const query = CounterQuery.fromPartial({
    nodeName: flagString(p, 'node') ?? '',
    topRules: parsePositiveInt(flagString(p, 'top'), 'top', 10),
  });
  const c = ctx.clients();
  const emit = (s: Snap, prev: Snap | undefined) => {
    if (ctx.out.json) ctx.out.writeJson(CounterSnapshot.toJSON(s));
    else if (ctx.config.stdoutTty && prev !== undefined) ctx.out.redraw(renderCounters(s, prev));
    else ctx.out.write(`${prev !== undefined ? '\n' : ''}${renderCounters(s, prev)}`);
  };
  if (!flagBool(p, 'watch')) {
    const res = await unary(c, c.counters, c.counters.getCounters, GetCountersRequest.fromPartial({ query }));
    emit(res.snapshot!, undefined);
    return;
  }
  const intervalText = flagString(p, 'interval');
  const interval = intervalText ? parseDurationSeconds(intervalText, 'interval') : 1;
  const max = parsePositiveInt(flagString(p, 'count'), 'count', Number.MAX_SAFE_INTEGER);
  const stream = c.counters.watchCounters(
    WatchCountersRequest.fromPartial({ query, interval: durationFromSeconds(interval) }),
    c.metadata(),
  );
  const stop = () => stream.cancel();
  process.once('SIGINT', stop);
  let prev: Snap | undefined;
  let seen = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (msg: { snapshot?: Snap }) => {
        if (!msg.snapshot) return;
        emit(msg.snapshot, prev);
        prev = msg.snapshot;
        if (++seen >= max) stream.cancel();
      });
      stream.on('error', (err: ServiceError) =>
        err.code === 1 /* CANCELLED */ ? resolve() : reject(toCliError(err, c.target, c.tokenSource)),
      );
      stream.on('end', () => resolve());
    });
  } finally {
    process.off('SIGINT', stop);
  }
}
