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

import type { Prefix } from '../../../common/src/cidr.js';
import type { DefaultAction, RuleAction, RuleDirection, RuleMode } from '../../../common/src/policy.js';

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
  | { readonly kind: 'journal.delete'; readonly id: bigint }
  /** Zero a counter slot before it is given to a new rule. */
  | { readonly kind: 'counter.reset'; readonly slot: number };

export interface SyncMeta {
  /** Revision the kernel state corresponds to; 0n = none. */
  readonly revision: bigint;
  /** Store the revision belongs to (SyncStart.store_id); '' = none. */
  readonly storeId: string;
}

export interface DatapathCapacity {
  /** Prefixes each of the four tables (ingress/egress x IPv4/IPv6) holds at most. */
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
}

export interface Datapath {
  readonly capacity: DatapathCapacity;
  readonly defaultAction: DefaultAction;
  /** True if this process created the maps; false if it reopened existing pins. */
  readonly createdFresh: boolean;

  /** Every entry in the four kernel tables (one batch read per table). */
  readEntries(): KernelEntry[];
  readJournal(): JournalRule[];
  readMeta(): SyncMeta;
  usage(): TableUsage[];

  /**
   * Applies `ops` in order, grouping consecutive ops of one kind and map into
   * batch calls, then writes `meta` if given. Throws DatapathError naming the
   * operation, map, errno and a human message. Callers check capacity first
   * (see usage()) so a full map is refused before anything changes.
   */
  apply(ops: readonly MapOp[], meta?: SyncMeta): void;

  /** Summed per-CPU rule counters for slots [0, upTo), in one batch read. */
  readRuleCounters(upTo: number): { packets: BigUint64Array; bytes: BigUint64Array };
  /** Verdict totals per attached interface and direction. */
  readInterfaceCounters(): InterfaceCounters[];

  /** Attaches XDP ingress and TC egress, pinning the links; idempotent. */
  attach(ifname: string, opts?: AttachOptions): InterfaceAttachment;
  /** Detaches one interface and removes its link pins. */
  detach(ifname: string): void;
  /** Interfaces with pinned links (survive restarts). */
  attachments(): InterfaceAttachment[];

  /** Detaches everything and removes every pin. Explicit uninstall only. */
  uninstall(): void;
  /** Releases fds. Never detaches: enforcement stays in place. */
  close(): void;
}
