// What the demo shows of a counter snapshot: this run only. Counters persist
// in the data directory across runs (a second run's node and fleet totals
// start where the first left off, and the first run's rule, deleted since,
// still has its counters), so totals are shown from this run's first
// snapshot on, and rules only if this run created them. Pure.
import type { VerdictCounters } from '../../../proto/gen/fleetwall/v1/counter.js';
import type { CounterSnapshot } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import { ZERO_COUNTERS } from '../commands/counters.js';

/** a - b, field by field, never below 0 (a counter reset shows as 0, not as a negative count). */
function minus(a: VerdictCounters | undefined, b: VerdictCounters | undefined): VerdictCounters {
  const x = a ?? ZERO_COUNTERS;
  const y = b ?? ZERO_COUNTERS;
  const d = (p: bigint, q: bigint) => (p > q ? p - q : 0n);
  return {
    passPackets: d(x.passPackets, y.passPackets),
    passBytes: d(x.passBytes, y.passBytes),
    dropPackets: d(x.dropPackets, y.dropPackets),
    dropBytes: d(x.dropBytes, y.dropBytes),
    wouldDropPackets: d(x.wouldDropPackets, y.wouldDropPackets),
    wouldDropBytes: d(x.wouldDropBytes, y.wouldDropBytes),
  };
}

/**
 * `snap` as counted since `start` (this run's first snapshot), with only the
 * rules in `ruleIds` (the ones this run created).
 */
export function sinceStart(snap: CounterSnapshot, start: CounterSnapshot, ruleIds: ReadonlySet<bigint>): CounterSnapshot {
  const startNodes = new Map(start.nodes.map((n) => [n.nodeName, n.totals]));
  return {
    fleet: minus(snap.fleet, start.fleet),
    nodes: snap.nodes.map((n) => ({ ...n, totals: minus(n.totals, startNodes.get(n.nodeName)) })),
    // Created after the start snapshot: all their counts are this run's.
    rules: snap.rules.filter((r) => ruleIds.has(r.ruleId)),
    collectTime: snap.collectTime,
  };
}

/** One line per snapshot when the output is not a terminal (logs, tests). */
export function summaryLine(secondsSinceStart: number, view: CounterSnapshot): string {
  const f = view.fleet ?? ZERO_COUNTERS;
  const rules = view.rules.map((r) => `; rule #${r.ruleId} ${r.cidr || '(deleted)'}: ${r.packets} packets`).join('');
  return `[${secondsSinceStart.toFixed(1)} s] pass=${f.passPackets} drop=${f.dropPackets} would-drop=${f.wouldDropPackets}${rules}`;
}
