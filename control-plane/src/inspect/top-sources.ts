// Top sources per rule over a window: estimated packets (summed weights),
// events, nodes and last time per (rule, matched address), from the events
// in the history. Pure over the events given.

import type { RuleTopSources, SourceCount } from '../../../proto/gen/fleetwall/v1/inspect_service.js';
import { type InspectEvent, matchedAddress } from './inspect-event.js';

interface Acc {
  packets: bigint;
  events: number;
  nodes: Set<string>;
  lastMs: number;
}

export interface TopQuery {
  readonly ruleIds: ReadonlySet<bigint> | null;
  readonly node: string;
  readonly limit: number;
}

/** Rules by estimated packets (most first), each with its `limit` top addresses. */
export function topSources(events: Iterable<InspectEvent>, q: TopQuery): RuleTopSources[] {
  const byRule = new Map<bigint, { packets: bigint; addrs: Map<string, Acc> }>();
  for (const e of events) {
    if (q.ruleIds && !q.ruleIds.has(e.ruleId)) continue;
    if (q.node !== '' && e.node !== q.node) continue;
    let r = byRule.get(e.ruleId);
    if (!r) byRule.set(e.ruleId, (r = { packets: 0n, addrs: new Map() }));
    r.packets += e.weight;
    const a = matchedAddress(e);
    let acc = r.addrs.get(a);
    if (!acc) r.addrs.set(a, (acc = { packets: 0n, events: 0, nodes: new Set(), lastMs: 0 }));
    acc.packets += e.weight;
    acc.events++;
    acc.nodes.add(e.node);
    if (e.timeMs > acc.lastMs) acc.lastMs = e.timeMs;
  }
  const cmp = (x: bigint, y: bigint) => (x > y ? -1 : x < y ? 1 : 0);
  return [...byRule.entries()]
    .sort((a, b) => cmp(a[1].packets, b[1].packets) || (a[0] < b[0] ? -1 : 1))
    .map(([ruleId, r]) => ({
      ruleId,
      packets: r.packets,
      sources: [...r.addrs.entries()]
        .sort((a, b) => cmp(a[1].packets, b[1].packets) || (a[0] < b[0] ? -1 : 1))
        .slice(0, q.limit)
        .map(
          ([address, acc]): SourceCount => ({
            address,
            packets: acc.packets,
            events: BigInt(acc.events),
            nodeNames: [...acc.nodes].sort(),
            lastSeen: new Date(acc.lastMs),
          }),
        ),
    }));
}
