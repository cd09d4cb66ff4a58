// Turns the agents' cumulative kernel counters into totals that never go
// backwards. For every (node, rule) and (node, interface, direction) we keep
// the total and the last cumulative value the agent reported; a report adds
// (value - last), or the whole value when it is lower (the kernel entry was
// re-created). Totals and last values are persisted together, periodically,
// in one transaction, and loaded again when the node connects (to this or
// another control plane), so lost, repeated or re-sent reports, agent
// restarts and failovers never miscount.
//
// The write-back goes through a FlushLoop: while the database is away the
// totals stay in memory (bounded: one entry per node and rule or interface,
// and only rules the rule set has or had lately) and are written when it
// returns; a row the database refuses for good is set aside and logged once.
// A node's next stream on this process takes its totals over from memory, so
// attaching never waits for a write.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import { FlushLoop, type WriterHealth, writeRows } from '../store/flush-loop.js';
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
  owner: number;
  readonly rules: Map<bigint, RuleState>;
  readonly ifaces: Map<string, InterfaceState>;
  dirty: boolean;
  /** Its stream ended: dropped from memory once everything is written. */
  detached: boolean;
}

interface RuleRow {
  node_name: string;
  rule_id: string;
  packets: string;
  bytes: string;
  last_packets: string;
  last_bytes: string;
}

interface IfaceRow {
  node_name: string;
  interface: string;
  direction: number;
  totals: string;
  last: string;
}

/** Keys (node/rule or node/interface) the database refused, remembered so they are logged once; bounded. */
const MAX_REFUSED_KEYS = 10_000;
const READ_FLUSH_WAIT_MS = 2000;

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
  private readonly loop: FlushLoop;
  private readonly refused = new Set<string>();
  /** Samples dropped because their rule is not (or no longer) in the rule set. */
  droppedSamples = 0;

  constructor(
    private readonly sql: Sql,
    flushIntervalMs: number,
    private readonly logger: Logger,
    /** Whether counters for this rule id are kept (it is, or lately was, in the rule set). */
    private readonly knownRule: (id: bigint) => boolean = () => true,
  ) {
    this.loop = new FlushLoop(() => this.flushNow(), { name: 'counters', intervalMs: flushIntervalMs, logger });
  }

  start(): void {
    this.loop.start();
  }

  stop(): void {
    this.loop.stop();
  }

  get health(): WriterHealth {
    return this.loop.health;
  }

  /** The database is back: retry a failing flush now (FlushLoop.retrySoon). */
  retrySoon(): void {
    this.loop.retrySoon();
  }

  /** Loads the node's stored totals and last values (call before its first report); an earlier stream's totals in memory are taken over. */
  async attach(node: string, sessionId: number): Promise<void> {
    const held = this.nodes.get(node);
    if (held) {
      held.owner = sessionId;
      held.detached = false;
      return;
    }
    const rules = await this.sql<{ rule_id: bigint; packets: string; bytes: string; last_packets: string; last_bytes: string }[]>`
      select rule_id, packets::text, bytes::text, last_packets::text, last_bytes::text from node_rule_counters where node_name = ${node}`;
    const ifaces = await this.sql<{ interface: string; direction: number; totals: string[]; last: string[] }[]>`
      select interface, direction, totals::text[] as totals, last::text[] as last from node_interface_counters where node_name = ${node}`;
    const st: NodeCounterState = { owner: sessionId, rules: new Map(), ifaces: new Map(), dirty: false, detached: false };
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
    // Another attach of the same node may have finished first (it holds the newer totals).
    const raced = this.nodes.get(node);
    if (raced) {
      raced.owner = sessionId;
      raced.detached = false;
      return;
    }
    this.nodes.set(node, st);
  }

  /** Applies one report of cumulative values. */
  apply(node: string, sessionId: number, report: CounterReport): void {
    const st = this.nodes.get(node);
    if (!st || st.owner !== sessionId || st.detached) return;
    for (const s of report.rules) {
      let r = st.rules.get(s.ruleId);
      if (!r) {
        if (!this.knownRule(s.ruleId) || this.refused.has(`${node}/r${s.ruleId}`)) {
          this.droppedSamples++;
          continue;
        }
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
        if (this.refused.has(`${node}/i${key}`)) continue;
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

  /** Persists changed totals and last values now (joining a flush in progress); rejects if the write fails. */
  flush(): Promise<void> {
    return this.loop.flush();
  }

  /** Before a read: gives pending totals a bounded chance to be written; never fails or waits long. */
  async settleForRead(): Promise<void> {
    if (this.loop.failing) return;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.loop.flush().catch(() => undefined), new Promise<void>((r) => (t = setTimeout(r, READ_FLUSH_WAIT_MS)))]);
    clearTimeout(t);
  }

  private refuse(key: string, what: Record<string, unknown>): void {
    this.loop.setAside(1);
    if (this.refused.has(key) || this.refused.size >= MAX_REFUSED_KEYS) return;
    this.refused.add(key);
    this.logger.error(what, 'the database refuses this counter row; it is set aside (its counts are lost)');
  }

  private async flushNow(): Promise<void> {
    const ruleRows: RuleRow[] = [];
    const ifaceRows: IfaceRow[] = [];
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
    let refusedRules: RuleRow[];
    let refusedIfaces: IfaceRow[];
    try {
      refusedRules = await writeRows(ruleRows, (b) => this.writeRules(b));
      refusedIfaces = await writeRows(ifaceRows, (b) => this.writeIfaces(b));
    } catch (e) {
      for (const m of marks) m.dirty = true;
      throw e;
    }
    for (const r of refusedRules) {
      this.nodes.get(r.node_name)?.rules.delete(BigInt(r.rule_id));
      this.refuse(`${r.node_name}/r${r.rule_id}`, { node: r.node_name, rule_id: r.rule_id });
    }
    for (const r of refusedIfaces) {
      this.nodes.get(r.node_name)?.ifaces.delete(`${r.direction}/${r.interface}`);
      this.refuse(`${r.node_name}/i${r.direction}/${r.interface}`, { node: r.node_name, interface: r.interface, direction: r.direction });
    }
    for (const [node, st] of this.nodes) if (st.detached && !st.dirty) this.nodes.delete(node);
  }

  private async writeRules(rows: readonly RuleRow[]): Promise<void> {
    await this.sql`
      insert into node_rule_counters (node_name, rule_id, packets, bytes, last_packets, last_bytes)
      select x.node_name, x.rule_id, x.packets, x.bytes, x.last_packets, x.last_bytes
      from jsonb_to_recordset(${this.sql.json(rows as never)}) as x(node_name text, rule_id bigint, packets numeric, bytes numeric, last_packets numeric, last_bytes numeric)
      on conflict (node_name, rule_id) do update set packets = excluded.packets, bytes = excluded.bytes,
        last_packets = excluded.last_packets, last_bytes = excluded.last_bytes`;
  }

  private async writeIfaces(rows: readonly IfaceRow[]): Promise<void> {
    await this.sql`
      insert into node_interface_counters (node_name, interface, direction, totals, last)
      select x.node_name, x.interface, x.direction, x.totals::numeric[], x.last::numeric[]
      from jsonb_to_recordset(${this.sql.json(rows as never)}) as x(node_name text, interface text, direction smallint, totals text, last text)
      on conflict (node_name, interface, direction) do update set totals = excluded.totals, last = excluded.last`;
  }

  /** Its stream ended: the totals are written by the next flush (started now), then forgotten. */
  detach(node: string, sessionId: number): void {
    const st = this.nodes.get(node);
    if (st?.owner !== sessionId) return;
    st.detached = true;
    this.loop.kick();
  }

  /** Shutdown: writes everything, forgets every node. */
  async detachAll(): Promise<void> {
    await this.flush();
    this.nodes.clear();
  }

  /** A deleted node's totals must not be written again. */
  forget(node: string): void {
    this.nodes.delete(node);
  }
}
