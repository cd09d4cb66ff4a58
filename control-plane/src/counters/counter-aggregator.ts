// Turns the agents' cumulative kernel counters into totals that never go
// backwards. For every (node, rule) and (node, interface, direction) we keep
// the total and the last cumulative value the agent reported; a report adds
// (value - last), or the whole value when it is lower (the kernel entry was
// re-created). Totals and last values are persisted together, periodically,
// in one transaction, and loaded again when the node connects (to this or
// another control plane), so lost, repeated or re-sent reports, agent
// restarts and failovers never miscount.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import type { CounterReport } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { VerdictCounters } from '../../../proto/gen/fleetwall/v1/counter.js';

export const VERDICT_FIELDS = ['passPackets', 'passBytes', 'dropPackets', 'dropBytes', 'wouldDropPackets', 'wouldDropBytes'] as const;

interface RuleState {
  packets: bigint;
  bytes: bigint;
  lastPackets: bigint;
  lastBytes: bigint;
  dirty: boolean;
}

interface InterfaceState {
  readonly iface: string;
  readonly direction: number;
  totals: bigint[];
  last: bigint[];
  dirty: boolean;
}

interface NodeCounterState {
  readonly owner: number;
  readonly rules: Map<bigint, RuleState>;
  readonly ifaces: Map<string, InterfaceState>;
  dirty: boolean;
}

export function verdictArray(v: VerdictCounters | undefined): bigint[] {
  return VERDICT_FIELDS.map((f) => (v ? v[f] : 0n));
}

export function verdictFromArray(a: readonly bigint[]): VerdictCounters {
  return {
    passPackets: a[0] ?? 0n,
    passBytes: a[1] ?? 0n,
    dropPackets: a[2] ?? 0n,
    dropBytes: a[3] ?? 0n,
    wouldDropPackets: a[4] ?? 0n,
    wouldDropBytes: a[5] ?? 0n,
  };
}

function pgArray(a: readonly bigint[]): string {
  return `{${a.join(',')}}`;
}

export class CounterAggregator {
  private readonly nodes = new Map<string, NodeCounterState>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly sql: Sql,
    private readonly flushIntervalMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.flush().catch((err) => this.logger.warn({ err }, 'counter flush failed'));
    }, this.flushIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Loads the node's stored totals and last values (call before its first report). */
  async attach(node: string, sessionId: number): Promise<void> {
    // An earlier stream of the same node may still hold unflushed totals.
    await this.flush();
    const rules = await this.sql<{ rule_id: bigint; packets: string; bytes: string; last_packets: string; last_bytes: string }[]>`
      select rule_id, packets::text, bytes::text, last_packets::text, last_bytes::text from node_rule_counters where node_name = ${node}`;
    const ifaces = await this.sql<{ interface: string; direction: number; totals: string[]; last: string[] }[]>`
      select interface, direction, totals::text[] as totals, last::text[] as last from node_interface_counters where node_name = ${node}`;
    const st: NodeCounterState = { owner: sessionId, rules: new Map(), ifaces: new Map(), dirty: false };
    for (const r of rules) {
      st.rules.set(r.rule_id, {
        packets: BigInt(r.packets),
        bytes: BigInt(r.bytes),
        lastPackets: BigInt(r.last_packets),
        lastBytes: BigInt(r.last_bytes),
        dirty: false,
      });
    }
    for (const i of ifaces) {
      st.ifaces.set(`${i.direction}/${i.interface}`, {
        iface: i.interface,
        direction: i.direction,
        totals: i.totals.map((x) => BigInt(x)),
        last: i.last.map((x) => BigInt(x)),
        dirty: false,
      });
    }
    this.nodes.set(node, st);
  }

  /** Applies one report of cumulative values. */
  apply(node: string, sessionId: number, report: CounterReport): void {
    const st = this.nodes.get(node);
    if (!st || st.owner !== sessionId) return;
    for (const s of report.rules) {
      let r = st.rules.get(s.ruleId);
      if (!r) {
        r = { packets: 0n, bytes: 0n, lastPackets: 0n, lastBytes: 0n, dirty: true };
        st.rules.set(s.ruleId, r);
      }
      const reset = s.packets < r.lastPackets || s.bytes < r.lastBytes;
      r.packets += reset ? s.packets : s.packets - r.lastPackets;
      r.bytes += reset ? s.bytes : s.bytes - r.lastBytes;
      r.lastPackets = s.packets;
      r.lastBytes = s.bytes;
      r.dirty = true;
      st.dirty = true;
    }
    for (const s of report.interfaces) {
      const key = `${s.direction}/${s.interface}`;
      let i = st.ifaces.get(key);
      if (!i) {
        i = { iface: s.interface, direction: s.direction, totals: [0n, 0n, 0n, 0n, 0n, 0n], last: [0n, 0n, 0n, 0n, 0n, 0n], dirty: true };
        st.ifaces.set(key, i);
      }
      const cur = verdictArray(s.counters);
      const reset = cur.some((v, k) => v < i!.last[k]!);
      i.totals = i.totals.map((t, k) => t + (reset ? cur[k]! : cur[k]! - i!.last[k]!));
      i.last = cur;
      i.dirty = true;
      st.dirty = true;
    }
  }

  /** Persists changed totals and last values in one transaction. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.flushNow());
    return this.flushing;
  }

  private async flushNow(): Promise<void> {
    const ruleRows: unknown[] = [];
    const ifaceRows: unknown[] = [];
    const marks: { dirty: boolean }[] = [];
    for (const [node, st] of this.nodes) {
      if (!st.dirty) continue;
      st.dirty = false;
      marks.push(st);
      for (const [id, r] of st.rules) {
        if (!r.dirty) continue;
        r.dirty = false;
        marks.push(r);
        ruleRows.push({
          node_name: node,
          rule_id: id.toString(),
          packets: r.packets.toString(),
          bytes: r.bytes.toString(),
          last_packets: r.lastPackets.toString(),
          last_bytes: r.lastBytes.toString(),
        });
      }
      for (const i of st.ifaces.values()) {
        if (!i.dirty) continue;
        i.dirty = false;
        marks.push(i);
        ifaceRows.push({ node_name: node, interface: i.iface, direction: i.direction, totals: pgArray(i.totals), last: pgArray(i.last) });
      }
    }
    if (ruleRows.length === 0 && ifaceRows.length === 0) return;
    try {
      await this.sql.begin(async (tx) => {
        if (ruleRows.length) {
          await tx`
            insert into node_rule_counters (node_name, rule_id, packets, bytes, last_packets, last_bytes)
            select x.node_name, x.rule_id, x.packets, x.bytes, x.last_packets, x.last_bytes
            from jsonb_to_recordset(${tx.json(ruleRows as never)}) as x(node_name text, rule_id bigint, packets numeric, bytes numeric, last_packets numeric, last_bytes numeric)
            on conflict (node_name, rule_id) do update set packets = excluded.packets, bytes = excluded.bytes,
              last_packets = excluded.last_packets, last_bytes = excluded.last_bytes`;
        }
        if (ifaceRows.length) {
          await tx`
            insert into node_interface_counters (node_name, interface, direction, totals, last)
            select x.node_name, x.interface, x.direction, x.totals::numeric[], x.last::numeric[]
            from jsonb_to_recordset(${tx.json(ifaceRows as never)}) as x(node_name text, interface text, direction smallint, totals text, last text)
            on conflict (node_name, interface, direction) do update set totals = excluded.totals, last = excluded.last`;
        }
      });
    } catch (e) {
      for (const m of marks) m.dirty = true;
      throw e;
    }
  }

  /** Flushes and forgets a node whose stream ended. */
  async detach(node: string, sessionId: number): Promise<void> {
    await this.flush();
    if (this.nodes.get(node)?.owner === sessionId) this.nodes.delete(node);
  }

  async detachAll(): Promise<void> {
    await this.flush();
    this.nodes.clear();
  }
}
