// The narrow interface between the agent's logic and the kernel.
//
// Everything under node-agent/src/datapath/ is the only code that touches the
// FFI (koffi -> libbpf.so.1). The rest of the agent sees this interface: it
// speaks in logical entries (direction + prefix -> verdict data), never in
// map fds, struct layouts or which lookup structure holds a prefix length.
//
// State kept with the pins under `pinDir` (survives agent restarts, lost on
// reboot or uninstall):
//   - the kernel entries (what the programs look up),
//   - the journal: the agent's desired rules (id, prefix, action, mode,
//     expiry, counter slot), so a restarted agent knows what it enforces
//     without asking the control plane,
//   - the sync meta: the revision and store id the kernel state corresponds to,
//   - the per-CPU counters (per rule slot, per interface and verdict).
//
// A consumer can take just the role it uses (PrefixStore, CounterSource,
// Attacher, DatapathLifecycle); Datapath is all four. Failures are
// DatapathErrors (`err instanceof DatapathError`: op, target, errno, code).
//
// The ops travel in columns (OpBatch). The object forms (MapOp, KernelEntry,
// JournalRule) describe one op or entry; OpBatch.op(i) gives one. Building
// batches from objects and reading whole states as objects is for tests and
// benches (test/support/object-forms.ts), not part of this interface.

import type { EventRing } from './event-ring.js';
import type { EventSettings } from './events-abi.js';
import type { PolicyCounter } from './policy-maps.js';
import type { Prefix } from '../../../common/src/cidr.js';
import type { DefaultAction, RuleAction, RuleDirection, RuleMode } from '../../../common/src/policy.js';
import { FW_MAX_RULE_SLOTS, FW_STORE_ID_MAX, type TableIndex, tableDirection, tableFamily } from './abi.js';

export { DatapathError } from './errors.js';
export { type TableIndex, tableDirection, tableFamily, tableIndex } from './abi.js';

/** One prefix in one kernel table (direction x family). */
export interface KernelEntry {
  readonly direction: RuleDirection;
  readonly prefix: Prefix;
  readonly action: RuleAction;
  readonly mode: RuleMode;
  /** Index into the per-CPU rule counter array; the rule counted on a match. */
  readonly slot: number;
}

/** A desired rule as persisted next to the pins. */
export interface JournalRule {
  readonly id: bigint;
  readonly direction: RuleDirection;
  readonly prefix: Prefix;
  readonly action: RuleAction;
  readonly mode: RuleMode;
  /** Unix milliseconds; 0 = never expires. */
  readonly expireUnixMs: number;
  readonly slot: number;
}

export type MapOp =
  | { readonly kind: 'entry.upsert'; readonly entry: KernelEntry }
  | { readonly kind: 'entry.delete'; readonly direction: RuleDirection; readonly prefix: Prefix }
  | { readonly kind: 'journal.upsert'; readonly rule: JournalRule }
  /** The rule's slot says where its journal entry is (skipped unless that entry is the rule's). */
  | { readonly kind: 'journal.delete'; readonly id: bigint; readonly slot: number }
  /** Zero a counter slot before it is given to a new rule. */
  | { readonly kind: 'counter.reset'; readonly slot: number };

// ---------------------------------------------------------------- columnar ops
//
// The bulk form of MapOp: a reusable batch of ops in columns (one typed array
// per field, no object per op). A million ops are a few chunks of a batch the
// caller refills; reads of the journal and the tables come back the same way.

/** Kind of op i of an OpBatch (OpBatch.kind[i]). */
export const OP = {
  entryUpsert: 1,
  entryDelete: 2,
  journalUpsert: 3,
  journalDelete: 4,
  counterReset: 5,
} as const;
export type OpCode = (typeof OP)[keyof typeof OP];

/** Attribute bits (OpBatch.attrs): the same bits as the agent's packed kernel entry. */
export const ATTR_MONITOR = 1;
export const ATTR_ALLOW = 2;

/**
 * Ops in columns. Op i is kind[i]; its fields, by kind:
 *  - entry.upsert: table, len, addr, attrs, slot
 *  - entry.delete: table, len, addr
 *  - journal.upsert: id, table, len, addr, attrs, slot, expire
 *  - journal.delete: id, slot
 *  - counter.reset: slot
 * addr: IPv4 (table bit 0 clear) in addr4[i] as the number whose big-endian
 * bytes are the address; IPv6 in addr6[16 * i .. 16 * i + 16). Host bits
 * may be set (the datapath masks them).
 */
export class OpBatch {
  readonly capacity: number;
  length = 0;
  readonly kind: Uint8Array;
  readonly table: Uint8Array;
  readonly len: Uint8Array;
  readonly attrs: Uint8Array;
  readonly slot: Uint32Array;
  readonly addr4: Uint32Array;
  readonly addr6: Uint8Array;
  readonly id: BigUint64Array;
  /** journal.upsert: Unix ms, 0 = never. */
  readonly expire: Float64Array;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`OpBatch capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
    this.kind = new Uint8Array(capacity);
    this.table = new Uint8Array(capacity);
    this.len = new Uint8Array(capacity);
    this.attrs = new Uint8Array(capacity);
    this.slot = new Uint32Array(capacity);
    this.addr4 = new Uint32Array(capacity);
    this.addr6 = new Uint8Array(capacity * 16);
    this.id = new BigUint64Array(capacity);
    this.expire = new Float64Array(capacity);
  }

  get full(): boolean {
    return this.length >= this.capacity;
  }

  clear(): void {
    this.length = 0;
  }

  private next(kind: OpCode): number {
    if (this.length >= this.capacity) throw new RangeError(`OpBatch is full (${this.capacity} ops)`);
    const i = this.length++;
    this.kind[i] = kind;
    return i;
  }

  private setAddr(i: number, table: number, addr: number | Uint8Array, off: number): void {
    if (tableFamily(table) === 4) {
      this.addr4[i] =
        typeof addr === 'number'
          ? addr >>> 0
          : ((addr[off]! << 24) | (addr[off + 1]! << 16) | (addr[off + 2]! << 8) | addr[off + 3]!) >>> 0;
    } else {
      if (typeof addr === 'number') throw new TypeError('an IPv6 address needs its 16 bytes');
      this.addr6.set(addr.subarray(off, off + 16), i * 16);
    }
  }

  /** addr: the IPv4 address as a number, or the address bytes at `off` (4 or 16). */
  entryUpsert(table: TableIndex, addr: number | Uint8Array, off: number, len: number, attrs: number, slot: number): void {
    const i = this.next(OP.entryUpsert);
    this.table[i] = table;
    this.setAddr(i, table, addr, off);
    this.len[i] = len;
    this.attrs[i] = attrs;
    this.slot[i] = slot;
  }

  entryDelete(table: TableIndex, addr: number | Uint8Array, off: number, len: number): void {
    const i = this.next(OP.entryDelete);
    this.table[i] = table;
    this.setAddr(i, table, addr, off);
    this.len[i] = len;
  }

  journalUpsert(
    id: bigint,
    table: TableIndex,
    addr: number | Uint8Array,
    off: number,
    len: number,
    attrs: number,
    slot: number,
    expireUnixMs: number,
  ): void {
    const i = this.next(OP.journalUpsert);
    this.id[i] = id;
    this.table[i] = table;
    this.setAddr(i, table, addr, off);
    this.len[i] = len;
    this.attrs[i] = attrs;
    this.slot[i] = slot;
    this.expire[i] = expireUnixMs;
  }

  journalDelete(id: bigint, slot: number): void {
    const i = this.next(OP.journalDelete);
    this.id[i] = id;
    this.slot[i] = slot;
  }

  counterReset(slot: number): void {
    this.slot[this.next(OP.counterReset)] = slot;
  }

  /** The address bytes of op i (a copy: 4 or 16 bytes). */
  addrBytes(i: number): Uint8Array {
    if (tableFamily(this.table[i]!) === 4) {
      const w = this.addr4[i]!;
      return new Uint8Array([w >>> 24, (w >>> 16) & 0xff, (w >>> 8) & 0xff, w & 0xff]);
    }
    return this.addr6.slice(i * 16, i * 16 + 16);
  }

  /** Op i as a MapOp object (diagnostics, tests). */
  op(i: number): MapOp {
    const k = this.kind[i]!;
    const table = this.table[i]!;
    const direction = tableDirection(table);
    const prefix = (): Prefix => ({ family: tableFamily(table), bytes: this.addrBytes(i), len: this.len[i]! });
    const a = this.attrs[i]!;
    const action: RuleAction = (a & ATTR_ALLOW) !== 0 ? 'allow' : 'deny';
    const mode: RuleMode = (a & ATTR_MONITOR) !== 0 ? 'monitor' : 'enforce';
    switch (k) {
      case OP.entryUpsert:
        return { kind: 'entry.upsert', entry: { direction, prefix: prefix(), action, mode, slot: this.slot[i]! } };
      case OP.entryDelete:
        return { kind: 'entry.delete', direction, prefix: prefix() };
      case OP.journalUpsert:
        return {
          kind: 'journal.upsert',
          rule: { id: this.id[i]!, direction, prefix: prefix(), action, mode, expireUnixMs: this.expire[i]!, slot: this.slot[i]! },
        };
      case OP.journalDelete:
        return { kind: 'journal.delete', id: this.id[i]!, slot: this.slot[i]! };
      case OP.counterReset:
        return { kind: 'counter.reset', slot: this.slot[i]! };
      default:
        throw new TypeError(`op ${i}: unknown kind ${k}`);
    }
  }
}

/** Bytes (UTF-8) of store id the pinned sync meta holds; a longer one is refused (EINVAL). */
export const MAX_STORE_ID_BYTES = FW_STORE_ID_MAX;
/** Counter slots a datapath holds at most (capacity.counterSlots; the slot field of an IPv4 /24 index word). */
export const MAX_COUNTER_SLOTS = FW_MAX_RULE_SLOTS;

export interface SyncMeta {
  /** Revision the kernel state corresponds to; 0n = none. */
  readonly revision: bigint;
  /** Store the revision belongs to (SyncStart.store_id), at most MAX_STORE_ID_BYTES; '' = none. */
  readonly storeId: string;
}

export interface DatapathCapacity {
  /** Prefixes each of the four tables (ingress/egress x IPv4/IPv6) holds at most (its maps grow up to it). */
  readonly prefixesPerTable: number;
  /** Rule counter slots (and journal entries) at most. */
  readonly counterSlots: number;
}

export interface TableUsage {
  readonly direction: RuleDirection;
  readonly family: 4 | 6;
  readonly entries: number;
  readonly capacity: number;
}

/** One table's share of the kernel memory. */
export interface TableMemory {
  readonly direction: RuleDirection;
  readonly family: 4 | 6;
  readonly entries: number;
  /** Prefixes its hash is sized for now (it grows and shrinks with the entries, up to the capacity). */
  readonly size: number;
  /** Its maps' kernel memory: hash, spill hash, trie, and for IPv4 the /24 index (its /16 words and blocks). */
  readonly bytes: number;
  /** IPv4: /24 index blocks in use, and held (1 KB each). */
  readonly blocksInUse: number;
  readonly blocks: number;
}

/** The kernel memory of the datapath's maps (their memlock, as bpftool reports it), and what it holds. */
export interface KernelMemory {
  readonly bytes: number;
  /** Of those, the bytes that are there once per CPU, per CPU (rule counter rows, interface counters). */
  readonly perCpuBytes: number;
  readonly tables: readonly TableMemory[];
  /** Rule counters: slots, and their kernel memory (rows per CPU and the base row). */
  readonly counterSlots: number;
  readonly counterBytes: number;
  /** Journal: rules held, and its kernel memory (one entry per counter slot). */
  readonly journalRules: number;
  readonly journalBytes: number;
  /** Every map by name (the tables' maps and a generation's maps under their names), bytes. */
  readonly maps: readonly { readonly name: string; readonly bytes: number }[];
  /** Generations swapped in by this process (growing or shrinking maps), and the longest swap, ms. */
  readonly swaps: number;
  readonly swapMaxMs: number;
  /**
   * Swaps that failed (a load or a fill the kernel or libbpf refused, a shrink
   * whose maps filled up during the load: the generation in force stayed), by
   * kind, and the last one's kind and reason ('' none, or a swap went in since)
   * and time (epoch ms; 0 with the reason '').
   */
  readonly swapFailures: { readonly grow: number; readonly shrink: number };
  readonly lastSwapFailure: string;
  readonly lastSwapFailureAt: number;
}

export interface CounterPair {
  packets: bigint;
  bytes: bigint;
}

export interface VerdictTotals {
  pass: CounterPair;
  drop: CounterPair;
  wouldDrop: CounterPair;
}

export interface InterfaceCounters {
  readonly ifname: string;
  readonly ifindex: number;
  readonly direction: RuleDirection;
  readonly totals: VerdictTotals;
}

export type XdpAttachMode = 'native' | 'generic';
export type EgressAttachMode = 'tcx' | 'clsact';

export interface InterfaceAttachment {
  readonly ifname: string;
  readonly ifindex: number;
  readonly xdpMode: XdpAttachMode | 'none';
  readonly egressMode: EgressAttachMode | 'none';
}

export interface AttachOptions {
  /** 'auto' (default): native, falling back to generic with a warning. */
  readonly xdpMode?: XdpAttachMode | 'auto';
  /** Replace an XDP program that fleetwall did not attach. Default false: refuse. */
  readonly replaceForeign?: boolean;
  /** Attach the egress program too. Default true. */
  readonly egress?: boolean;
}

export interface DatapathOptions {
  /** Pin root, default /sys/fs/bpf/fleetwall. */
  readonly pinDir: string;
  /** Folder with the compiled *.bpf.o objects, default bpf/obj. */
  readonly objDir?: string;
  /** Used only when the maps are created; reopened pins keep their size. */
  readonly capacity?: Partial<DatapathCapacity>;
  /** Unmatched traffic: 'pass' (default) or 'drop' (allowlist mode). Load-time knob. */
  readonly defaultAction?: DefaultAction;
  /** Sampled drop events: the kernel budget (written at open; absent: what is pinned stays, off on a new install). */
  readonly events?: EventSettings;
  /** Bytes of the event ring (a power of two >= 4096), used when the maps are created (default 2 MiB). */
  readonly eventRingBytes?: number;
}

/**
 * The kernel tables, the journal and the sync meta: what the reconciler
 * writes and reads back.
 */
export interface PrefixStore {
  readonly capacity: DatapathCapacity;
  /** True if this process created the maps; false if it reopened existing pins. */
  readonly createdFresh: boolean;

  /**
   * Every kernel entry, as entry.upsert ops in chunks of at most `chunk`:
   * each step yields the same OpBatch, refilled. Read a chunk before asking
   * for the next; nothing may be applied while the iteration runs.
   */
  readEntryChunks(chunk?: number): Iterable<OpBatch>;
  /** The journal as journal.upsert ops in chunks (as readEntryChunks; no order). */
  readJournalChunks(chunk?: number): Iterable<OpBatch>;
  readMeta(): SyncMeta;
  usage(): TableUsage[];
  /** The maps' kernel memory and fill (a few syscalls: for metrics and status, not per packet). */
  memory(): KernelMemory;

  /**
   * Applies the batch's ops [0, length) in order, grouping consecutive ops
   * of one kind and map into batch calls, then writes `meta` if given.
   * Throws DatapathError naming the operation, map, errno and a human message.
   *
   * Capacity is checked before anything changes, in the order the ops run:
   * a table never holds more than its capacity at any point of the batch (an
   * upsert of a new prefix adds one, a delete of a present one frees one), so
   * adds placed after the deletes that make room for them fit in the same
   * call; otherwise E2BIG and nothing changed.
   *
   * Asynchronous: an apply that needs larger maps waits for their swap,
   * whose load (the verifier) runs off the event loop; applies run in call
   * order, and one called while another waits for a swap that was not its
   * own fits the maps in force is written at once. An apply that fits
   * resolves once its ops are written, even when it made a swap due (maps
   * 3/4 full: grow ahead; a quarter: shrink): that swap goes on in the
   * background, and if it fails the maps in force stay (logged and counted:
   * memory().swapFailures; the next apply tries again). Rejects with the DatapathError. The batch must stay
   * unchanged until the promise settles.
   */
  applyBatch(batch: OpBatch, meta?: SyncMeta): Promise<void>;
  /** Resolves once no swap an apply made due is in flight (whatever its outcome); at once without one. */
  settled(): Promise<void>;
}

/** The per-CPU counters, summed: what the counter reporter reads. */
export interface CounterSource {
  readonly capacity: DatapathCapacity;
  /**
   * Summed per-CPU rule counters of slots [first, first + n) into the
   * caller's arrays (n = the shorter array, cut at the capacity); returns n.
   */
  readRuleCountersInto(first: number, packets: BigUint64Array, bytes: BigUint64Array): number;
  /** Verdict totals per attached interface and direction. */
  readInterfaceCounters(): InterfaceCounters[];
}

/** Per-rule event budgets summed over CPU rows (caller-owned, reused). */
export interface EventBudgets {
  /** Events the ring had no room for, per slot (u32, wraps: use deltas). */
  readonly lost: Uint32Array;
  /** Drops not yet carried by an event, per slot (a deny rule's; an allow rule's slot reads its passes since events were turned on). */
  readonly pending: Uint32Array;
  /** The same for drops decided by the tables' default (no rule). */
  defaultLost: number;
  defaultPending: number;
}

/** Sampled drop events: the ring and the budgets (only datapaths with the event maps have one). */
export interface EventSource {
  /** The settings written, or null (what was pinned stays). */
  readonly settings: EventSettings | null;
  readonly ringBytes: number;
  configure(s: EventSettings): void;
  openRing(): EventRing;
  /** Budgets of slots [first, first + out.lost.length); returns the slots read. */
  readBudgets(first: number, out: EventBudgets): number;
  /** Changes when a generation swap gave the budgets a new map (their counts restart at 0). */
  readonly budgetsId: number;
}

/** The programs on interfaces. */
export interface Attacher {
  /** Attaches XDP ingress and TC egress, pinning the links; idempotent. */
  attach(ifname: string, opts?: AttachOptions): InterfaceAttachment;
  /** Detaches one interface and removes its link pins. */
  detach(ifname: string): void;
  /** Interfaces with pinned links (survive restarts). */
  attachments(): InterfaceAttachment[];
}

/** What an open datapath was opened with, and its end. */
export interface DatapathLifecycle {
  readonly capacity: DatapathCapacity;
  readonly defaultAction: DefaultAction;
  readonly createdFresh: boolean;
  /** Detaches everything and removes every pin. Explicit uninstall only. */
  uninstall(): void;
  /**
   * Releases fds. Never detaches: enforcement stays in place. An apply still
   * waiting (for a swap's load) rejects; the load, once it settles, is dropped
   * (settled() first lets a swap an apply made due land).
   */
  close(): void;
}

/** The whole data plane (what the agent opens; it hands each part the role it uses). */
export interface Datapath extends PrefixStore, CounterSource, Attacher, DatapathLifecycle {
  /** Sampled drop events, if this datapath has them (the BPF one does; fakes need not). */
  events?(): EventSource;
  /** The detection policies' counting (issue 18), if this datapath has it (the BPF one does; fakes need not). */
  readonly policies?: PolicyCounter;
}
