// An in-memory Datapath for agent-logic tests only. It models what the agent
// relies on, and every invariant modelled here is also checked end to end
// against the real kernel (test/agent/*.e2e.test.ts):
//  - state "pinned" under pinDir survives close() and a reopen in the same
//    process (kill -9 of an agent is modelled by dropping the object without
//    close(); the real thing is tested with a real process);
//  - the four tables are longest-prefix-match tables with a hard capacity,
//    checked per apply() call before anything changes, in the order the ops
//    run (a new key takes room, a delete of a present key frees it; the table
//    must never be over capacity at any point): DatapathError E2BIG;
//  - the bulk forms (applyBatch, readEntryChunks, readJournalChunks,
//    readRuleCountersInto) behave exactly as the object forms this fake also
//    offers (apply, readEntries, readJournal, readRuleCounters: the model's
//    own, for agent tests; test/support/object-forms.ts has them for any
//    datapath);
//  - apply() runs ops in order and stops at the first failing op (ops before
//    it stay applied, as with the kernel's batch calls);
//  - per-slot rule counters and per-interface verdict counters, fed by
//    inject(), which decides a packet the way the BPF programs do: one LPM
//    lookup, allow -> pass, deny enforce -> drop, deny monitor -> would_drop.

import { type Address, type Prefix, parseAddress, prefixContainsAddress, prefixKey } from '../../common/src/cidr.js';
import type { DefaultAction, RuleDirection, Verdict } from '../../common/src/policy.js';
import {
  type AttachOptions,
  type Datapath,
  type DatapathCapacity,
  DatapathError,
  type DatapathOptions,
  type InterfaceAttachment,
  type InterfaceCounters,
  type JournalRule,
  type KernelEntry,
  MAX_STORE_ID_BYTES,
  type MapOp,
  OpBatch,
  type SyncMeta,
  type KernelMemory,
  type TableUsage,
  tableIndex,
} from '../../node-agent/src/datapath/datapath.js';
import { batchOps, pushOp } from './object-forms.js';

interface PinnedState {
  capacity: DatapathCapacity;
  defaultAction: DefaultAction;
  tables: Map<string, KernelEntry>[];
  journal: Map<bigint, JournalRule>;
  meta: SyncMeta;
  packets: BigUint64Array;
  bytes: BigUint64Array;
  ifaces: Map<string, { ifindex: number; ingress: Totals; egress: Totals }>;
}

interface Totals {
  pass: { packets: bigint; bytes: bigint };
  drop: { packets: bigint; bytes: bigint };
  wouldDrop: { packets: bigint; bytes: bigint };
}

const pins = new Map<string, PinnedState>();

function zeroTotals(): Totals {
  return { pass: { packets: 0n, bytes: 0n }, drop: { packets: 0n, bytes: 0n }, wouldDrop: { packets: 0n, bytes: 0n } };
}

export interface FakeFault {
  /** Fail the n-th op (0-based) of the next apply() call that has that many ops. */
  readonly atOp: number;
  readonly errno?: number;
}

export class FakeDatapath implements Datapath {
  readonly capacity: DatapathCapacity;
  readonly defaultAction: DefaultAction;
  readonly createdFresh: boolean;
  private readonly s: PinnedState;
  private closed = false;
  /** Ops applied, by apply() call (tests inspect ordering). */
  readonly applied: MapOp[][] = [];
  readonly metaWrites: SyncMeta[] = [];
  fault: FakeFault | undefined;
  /** applyBatch() calls (the agent's bulk path). */
  batchCalls = 0;
  /** Called before each op; a test may throw from it. */
  beforeOp: ((op: MapOp, index: number) => void) | undefined;

  constructor(readonly options: DatapathOptions) {
    let s = pins.get(options.pinDir);
    this.createdFresh = s === undefined;
    if (!s) {
      const capacity: DatapathCapacity = {
        prefixesPerTable: options.capacity?.prefixesPerTable ?? 1024,
        counterSlots: options.capacity?.counterSlots ?? 1024,
      };
      s = {
        capacity,
        defaultAction: options.defaultAction ?? 'pass',
        tables: [new Map(), new Map(), new Map(), new Map()],
        journal: new Map(),
        meta: { revision: 0n, storeId: '' },
        packets: new BigUint64Array(capacity.counterSlots),
        bytes: new BigUint64Array(capacity.counterSlots),
        ifaces: new Map(),
      };
      pins.set(options.pinDir, s);
    }
    this.s = s;
    this.capacity = s.capacity;
    this.defaultAction = s.defaultAction;
  }

  static open(options: DatapathOptions): FakeDatapath {
    return new FakeDatapath(options);
  }

  /** True if pinned state exists for pinDir. */
  static exists(pinDir: string): boolean {
    return pins.has(pinDir);
  }

  static forget(pinDir: string): void {
    pins.delete(pinDir);
  }

  private live(): void {
    if (this.closed) throw new Error('fake datapath used after close()');
  }

  readEntries(): KernelEntry[] {
    this.live();
    return this.s.tables.flatMap((t) => [...t.values()]);
  }

  readJournal(): JournalRule[] {
    this.live();
    return [...this.s.journal.values()];
  }

  *readEntryChunks(chunk = 1024): Generator<OpBatch> {
    this.live();
    const out = new OpBatch(chunk);
    for (const e of this.readEntries()) {
      if (out.full) {
        yield out;
        out.clear();
      }
      pushOp(out, { kind: 'entry.upsert', entry: e });
    }
    if (out.length > 0) yield out;
  }

  *readJournalChunks(chunk = 1024): Generator<OpBatch> {
    this.live();
    const out = new OpBatch(chunk);
    for (const rule of this.readJournal()) {
      if (out.full) {
        yield out;
        out.clear();
      }
      pushOp(out, { kind: 'journal.upsert', rule });
    }
    if (out.length > 0) yield out;
  }

  readMeta(): SyncMeta {
    this.live();
    return this.s.meta;
  }

  usage(): TableUsage[] {
    const out: TableUsage[] = [];
    for (const direction of ['ingress', 'egress'] as const) {
      for (const family of [4, 6] as const) {
        out.push({
          direction,
          family,
          entries: this.s.tables[tableIndex(direction, family)]!.size,
          capacity: this.s.capacity.prefixesPerTable,
        });
      }
    }
    return out;
  }

  /**
   * A model of the real datapath's kernel memory (its sizing rules, not its
   * exact bytes): each table's hash sized to twice its entries (at least
   * 1,024), 16 B a prefix; the counters and journal to the highest slot in
   * use; 64 KB of interface counters per CPU. For agent logic only.
   */
  memory(): KernelMemory {
    this.live();
    const tables = this.usage().map((u) => {
      const size = Math.min(u.capacity, Math.max(1024, u.entries * 2));
      return { direction: u.direction, family: u.family, entries: u.entries, size, bytes: size * 16, blocksInUse: 0, blocks: 0 };
    });
    let high = -1;
    for (const r of this.s.journal.values()) high = Math.max(high, r.slot);
    const counterSlots = Math.min(this.s.capacity.counterSlots, Math.max(1024, high + 1));
    const counterBytes = counterSlots * 16 * 3;
    const journalBytes = counterSlots * 40;
    const tableBytes = tables.reduce((s, t) => s + t.bytes, 0);
    const bytes = tableBytes + counterBytes + journalBytes + 2 * 65536;
    return {
      bytes,
      perCpuBytes: counterSlots * 16 + 65536,
      tables,
      counterSlots,
      counterBytes,
      journalRules: this.s.journal.size,
      journalBytes,
      maps: [
        { name: 'fake_tables', bytes: tableBytes },
        { name: 'fw_rule_cnt', bytes: counterBytes },
        { name: 'fw_journal', bytes: journalBytes },
      ],
      swaps: 0,
      swapMaxMs: 0,
      swapFailures: { grow: 0, shrink: 0 },
      lastSwapFailure: '',
      lastSwapFailureAt: 0,
    };
  }

  apply(ops: readonly MapOp[], meta?: SyncMeta): void {
    this.live();
    // As the real meta: the store id is at most MAX_STORE_ID_BYTES.
    if (meta && Buffer.byteLength(meta.storeId, 'utf8') > MAX_STORE_ID_BYTES) {
      throw new DatapathError('apply', this.options.pinDir, 22, `store id "${meta.storeId}" is longer than ${MAX_STORE_ID_BYTES} bytes`);
    }
    // As the real datapath: capacity is checked per call, before anything
    // changes, replaying the call's entry ops in order (a new key takes room,
    // a delete of a present key frees it): never over capacity at any point.
    for (let t = 0; t < 4; t++) {
      const table = this.s.tables[t]!;
      const present = new Map<string, boolean>();
      let count = table.size;
      let peak = count;
      for (const op of ops) {
        if (op.kind === 'entry.upsert' && tableIndex(op.entry.direction, op.entry.prefix.family) === t) {
          const k = prefixKey(op.entry.prefix);
          if (!(present.get(k) ?? table.has(k))) {
            present.set(k, true);
            peak = Math.max(peak, ++count);
          }
        } else if (op.kind === 'entry.delete' && tableIndex(op.direction, op.prefix.family) === t) {
          const k = prefixKey(op.prefix);
          if (present.get(k) ?? table.has(k)) {
            present.set(k, false);
            count--;
          }
        }
      }
      if (peak > this.s.capacity.prefixesPerTable) {
        throw new DatapathError(
          'apply',
          `table ${t}`,
          7 /* E2BIG */,
          `would hold ${peak} prefixes, capacity is ${this.s.capacity.prefixesPerTable}; nothing was changed`,
        );
      }
    }
    this.applied.push([...ops]);
    const fault = this.fault;
    if (fault && fault.atOp < ops.length) this.fault = undefined;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      this.beforeOp?.(op, i);
      if (fault && fault.atOp === i) throw new DatapathError('update map', 'fake', fault.errno ?? 5, 'injected fault');
      switch (op.kind) {
        case 'entry.upsert': {
          const t = this.s.tables[tableIndex(op.entry.direction, op.entry.prefix.family)]!;
          const k = prefixKey(op.entry.prefix);
          if (!t.has(k) && t.size >= this.s.capacity.prefixesPerTable) {
            throw new DatapathError('update map', `fw_${op.entry.direction}_v${op.entry.prefix.family}`, 7 /* E2BIG */);
          }
          if (op.entry.slot < 0 || op.entry.slot >= this.s.capacity.counterSlots) throw new DatapathError('update map', 'entry slot', 22);
          t.set(k, { ...op.entry, prefix: { ...op.entry.prefix, bytes: new Uint8Array(op.entry.prefix.bytes) } });
          break;
        }
        case 'entry.delete':
          this.s.tables[tableIndex(op.direction, op.prefix.family)]!.delete(prefixKey(op.prefix));
          break;
        case 'journal.upsert':
          if (!this.s.journal.has(op.rule.id) && this.s.journal.size >= this.s.capacity.counterSlots) {
            throw new DatapathError('update map', 'fw_journal', 7);
          }
          this.s.journal.set(op.rule.id, { ...op.rule, prefix: { ...op.rule.prefix, bytes: new Uint8Array(op.rule.prefix.bytes) } });
          break;
        case 'journal.delete':
          this.s.journal.delete(op.id);
          break;
        case 'counter.reset':
          this.s.packets[op.slot] = 0n;
          this.s.bytes[op.slot] = 0n;
          break;
      }
    }
    if (meta) {
      this.s.meta = { ...meta };
      this.metaWrites.push({ ...meta });
    }
  }

  /** As the real one: asynchronous (a rejection, never a throw); applied at once (the fake has no generations to swap). */
  async applyBatch(batch: OpBatch, meta?: SyncMeta): Promise<void> {
    this.live();
    this.batchCalls++;
    this.apply(batchOps(batch), meta);
  }

  /** As the real one; the fake never swaps, so nothing is ever in flight. */
  async settled(): Promise<void> {}

  readRuleCounters(upTo: number): { packets: BigUint64Array; bytes: BigUint64Array } {
    this.live();
    const n = Math.min(upTo, this.s.capacity.counterSlots);
    return { packets: this.s.packets.slice(0, n), bytes: this.s.bytes.slice(0, n) };
  }

  readRuleCountersInto(first: number, packets: BigUint64Array, bytes: BigUint64Array): number {
    this.live();
    const n = Math.max(0, Math.min(packets.length, bytes.length, this.s.capacity.counterSlots - first));
    packets.set(this.s.packets.subarray(first, first + n));
    bytes.set(this.s.bytes.subarray(first, first + n));
    return n;
  }

  readInterfaceCounters(): InterfaceCounters[] {
    this.live();
    const out: InterfaceCounters[] = [];
    for (const [ifname, i] of this.s.ifaces) {
      for (const direction of ['ingress', 'egress'] as const) {
        const t = i[direction];
        out.push({
          ifname,
          ifindex: i.ifindex,
          direction,
          totals: { pass: { ...t.pass }, drop: { ...t.drop }, wouldDrop: { ...t.wouldDrop } },
        });
      }
    }
    return out;
  }

  attach(ifname: string, opts?: AttachOptions): InterfaceAttachment {
    this.live();
    if (ifname.startsWith('missing')) throw new DatapathError('attach xdp', ifname, 19 /* ENODEV */);
    let i = this.s.ifaces.get(ifname);
    if (!i) {
      i = { ifindex: 100 + this.s.ifaces.size, ingress: zeroTotals(), egress: zeroTotals() };
      this.s.ifaces.set(ifname, i);
    }
    return {
      ifname,
      ifindex: i.ifindex,
      xdpMode: opts?.xdpMode === 'generic' ? 'generic' : 'native',
      egressMode: opts?.egress === false ? 'none' : 'tcx',
    };
  }

  detach(ifname: string): void {
    this.s.ifaces.delete(ifname);
  }

  attachments(): InterfaceAttachment[] {
    return [...this.s.ifaces.entries()].map(([ifname, i]) => ({ ifname, ifindex: i.ifindex, xdpMode: 'native', egressMode: 'tcx' }));
  }

  uninstall(): void {
    pins.delete(this.options.pinDir);
    this.closed = true;
  }

  close(): void {
    this.closed = true;
  }

  // ------------------------------------------------------------ test hooks

  /** The kernel's view of one packet: one LPM lookup in the packet's table. */
  lookup(direction: RuleDirection, address: Address): KernelEntry | undefined {
    const t = this.s.tables[tableIndex(direction, address.family)]!;
    let best: KernelEntry | undefined;
    for (const e of t.values()) {
      if (prefixContainsAddress(e.prefix, address) && (!best || e.prefix.len > best.prefix.len)) best = e;
    }
    return best;
  }

  /** Sends `count` packets of `size` bytes through the model; returns the verdict. */
  inject(ifname: string, direction: RuleDirection, address: string, count = 1, size = 64): Verdict {
    const addr = parseAddress(address);
    const e = this.lookup(direction, addr);
    const verdict: Verdict = !e ? this.s.defaultAction : e.action === 'allow' ? 'pass' : e.mode === 'enforce' ? 'drop' : 'would_drop';
    const n = BigInt(count);
    const b = BigInt(count * size);
    if (e) {
      this.s.packets[e.slot] = this.s.packets[e.slot]! + n;
      this.s.bytes[e.slot] = this.s.bytes[e.slot]! + b;
    }
    const i = this.s.ifaces.get(ifname);
    if (i) {
      const c = i[direction][verdict === 'would_drop' ? 'wouldDrop' : verdict];
      c.packets += n;
      c.bytes += b;
    }
    return verdict;
  }

  /** Kernel entries of one table as canonical "prefix action mode slot" strings (sorted). */
  dump(): string[] {
    return this.readEntries()
      .map((e) => `${e.direction} ${prefixKey(e.prefix)} ${e.action} ${e.mode} ${e.slot}`)
      .sort();
  }

  journalSize(): number {
    return this.s.journal.size;
  }

  entryFor(direction: RuleDirection, prefix: Prefix): KernelEntry | undefined {
    return this.s.tables[tableIndex(direction, prefix.family)]!.get(prefixKey(prefix));
  }
}
