// Reading persisted counter totals: the fleet, per node (with interfaces),
// per rule (fleet totals = sum over nodes, or one node's rows).
import type { Sql } from 'postgres';
import type { NodeCounters, RuleCounters, VerdictCounters } from '../../../proto/gen/fleetwall/v1/counter.js';
import { verdictFromArray } from '../counters/counter-aggregator.js';
import { canonicalFromPg } from './rule-row.js';

export interface RuleCounterQuery {
  readonly nodeName?: string;
  readonly ruleIds?: readonly bigint[];
  readonly top: number;
}

export class CounterStore {
  constructor(private readonly sql: Sql) {}

  async fleet(): Promise<VerdictCounters> {
    const [r] = await this.sql<{ t: string[] }[]>`
      select array[coalesce(sum(totals[1]), 0), coalesce(sum(totals[2]), 0), coalesce(sum(totals[3]), 0),
                   coalesce(sum(totals[4]), 0), coalesce(sum(totals[5]), 0), coalesce(sum(totals[6]), 0)]::text[] as t
      from node_interface_counters`;
    return verdictFromArray(r!.t.map((x) => BigInt(x)));
  }

  async nodes(nodeName?: string): Promise<NodeCounters[]> {
    const rows = nodeName
      ? await this.sql<{ node_name: string; interface: string; direction: number; totals: string[] }[]>`
          select node_name, interface, direction, totals::text[] as totals from node_interface_counters
          where node_name = ${nodeName} order by interface, direction`
      : await this.sql<{ node_name: string; interface: string; direction: number; totals: string[] }[]>`
          select node_name, interface, direction, totals::text[] as totals from node_interface_counters
          order by node_name, interface, direction`;
    const out = new Map<string, { sum: bigint[]; node: NodeCounters }>();
    for (const r of rows) {
      let e = out.get(r.node_name);
      if (!e) {
        e = { sum: [0n, 0n, 0n, 0n, 0n, 0n], node: { nodeName: r.node_name, totals: undefined, interfaces: [] } };
        out.set(r.node_name, e);
      }
      const t = r.totals.map((x) => BigInt(x));
      for (let k = 0; k < 6; k++) e.sum[k]! += t[k] ?? 0n;
      e.node.interfaces.push({ interface: r.interface, direction: r.direction, counters: verdictFromArray(t) });
    }
    return [...out.values()].map((e) => ({ ...e.node, totals: verdictFromArray(e.sum) }));
  }

  async rules(q: RuleCounterQuery): Promise<RuleCounters[]> {
    type Row = { rule_id: bigint; packets: string; bytes: string; cidr: string | null; node_name: string };
    let rows: Row[];
    if (q.ruleIds && q.ruleIds.length > 0) {
      const ids = q.ruleIds.map(String);
      rows = q.nodeName
        ? await this.sql<Row[]>`
            select i.id as rule_id, coalesce(c.packets, 0)::text as packets, coalesce(c.bytes, 0)::text as bytes, r.cidr::text as cidr, ${q.nodeName} as node_name
            from unnest(${ids}::bigint[]) as i(id)
            left join node_rule_counters c on c.rule_id = i.id and c.node_name = ${q.nodeName}
            left join rules r on r.id = i.id order by i.id`
        : await this.sql<Row[]>`
            select i.id as rule_id, coalesce(sum(c.packets), 0)::text as packets, coalesce(sum(c.bytes), 0)::text as bytes, r.cidr::text as cidr, '' as node_name
            from unnest(${ids}::bigint[]) as i(id)
            left join node_rule_counters c on c.rule_id = i.id
            left join rules r on r.id = i.id group by i.id, r.cidr order by i.id`;
    } else {
      rows = q.nodeName
        ? await this.sql<Row[]>`
            select c.rule_id, c.packets::text, c.bytes::text, r.cidr::text as cidr, c.node_name
            from node_rule_counters c left join rules r on r.id = c.rule_id
            where c.node_name = ${q.nodeName} order by c.packets desc, c.rule_id limit ${q.top}`
        : await this.sql<Row[]>`
            select c.rule_id, sum(c.packets)::text as packets, sum(c.bytes)::text as bytes, r.cidr::text as cidr, '' as node_name
            from node_rule_counters c left join rules r on r.id = c.rule_id
            group by c.rule_id, r.cidr order by sum(c.packets) desc, c.rule_id limit ${q.top}`;
    }
    return rows.map((r) => ({
      ruleId: r.rule_id,
      packets: BigInt(r.packets),
      bytes: BigInt(r.bytes),
      nodeName: r.node_name,
      cidr: r.cidr ? canonicalFromPg(r.cidr) : '',
    }));
  }
}
