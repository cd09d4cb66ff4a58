// What the agent reports about itself, in one place: /healthz, /metrics and
// the AgentStatus message all read this snapshot.

export interface TableHealth {
  readonly table: string;
  readonly entries: number;
  readonly capacity: number;
  /** Prefixes its maps are sized for now (they grow and shrink with the entries, up to the capacity). */
  readonly size: number;
  /** Its maps' kernel memory, bytes. */
  readonly kernelBytes: number;
}

/** The kernel memory of fleetwall's maps (their memlock), bytes. */
export interface KernelMemoryHealth {
  readonly bytes: number;
  /** The part there once per CPU, per CPU (rule counter rows, interface counters). */
  readonly perCpuBytes: number;
  readonly counterSlots: number;
  readonly counterBytes: number;
  readonly journalRules: number;
  readonly journalBytes: number;
  /** Generations swapped in by this process (maps resized), and the longest swap, ms. */
  readonly resizes: number;
  readonly resizeMaxMs: number;
  /** Swaps that failed (the maps in force stayed) by kind, and the last one's "kind: reason" ('' none, or a swap went in since). */
  readonly resizeFailures: { readonly grow: number; readonly shrink: number };
  readonly lastResizeFailure: string;
  /** When it failed (ISO 8601), '' with lastResizeFailure ''. */
  readonly lastResizeFailureTime: string;
  readonly maps: readonly { readonly name: string; readonly bytes: number }[];
}

export interface AgentHealth {
  readonly nodeName: string;
  readonly syncState: string;
  readonly connected: boolean;
  readonly controlPlane: string;
  readonly appliedRevision: bigint;
  readonly desiredRevision: bigint;
  readonly storeId: string;
  readonly rulesDesired: number;
  readonly rulesJournaled: number;
  /** Prefixes in the kernel tables. */
  readonly rulesInKernel: number;
  readonly tables: readonly TableHealth[];
  readonly kernelMemory: KernelMemoryHealth;
  /** Fullest table's entries / capacity. */
  readonly mapFillRatio: number;
  readonly counterSlotsInUse: number;
  readonly counterSlots: number;
  readonly lastError: string;
  readonly interfaces: readonly { name: string; ifindex: number; xdpMode: string; egressMode: string }[];
  readonly lastSyncMode: string;
  /** Hello to the first ACK of the last stream (a snapshot's apply time). */
  readonly lastSyncMs: number;
  /** Last delta: commit_time (control plane clock) to its ACK, ms; -1 before the first. */
  readonly lastPropagationMs: number;
  readonly snapshots: number;
  readonly resumes: number;
  readonly reconnects: number;
  /** TLS with a node certificate (identity/), its expiry (ISO, '' without TLS), renewals, streams moved to a renewed certificate. */
  readonly tls: boolean;
  readonly certificateExpires: string;
  readonly certificateRenewals: number;
  readonly streamSwitches: number;
  readonly acks: number;
  readonly nacks: number;
  /** Failsafe entries: always allowed, ingress and egress (failsafe/). */
  readonly failsafe: readonly { readonly cidr: string; readonly source: string }[];
  /** Detection policies (respond/): policies counted, detections, local bans, the kernel group table's churn; null without policy maps. */
  readonly respond: Readonly<Record<string, number | bigint>> | null;
  readonly expiredLocally: number;
  readonly pendingExpiries: number;
  readonly lastApplyMs: number;
  readonly applies: number;
  readonly repairs: number;
  readonly counterReports: number;
  /** Sampled drop events: read from the kernel ring, queued now, dropped by the full queue, sent, lost in the kernel. */
  readonly events: EventHealth;
  /** Last counter read + diff, ms. */
  readonly counterReadMs: number;
  /** Event-loop delay since the last /healthz: p99 and max, ms. */
  readonly eventLoopDelayMs: Readonly<{ p99: number; max: number }>;
  readonly uptimeSeconds: number;
  /** process.memoryUsage() in MB (rss, heapTotal, heapUsed, external, arrayBuffers). */
  readonly memoryMb: Readonly<Record<string, number>>;
  readonly pid: number;
}

export interface EventHealth {
  readonly enabled: boolean;
  readonly read: number;
  readonly queued: number;
  readonly queueDropped: number;
  /** Records whose counter slot no rule owned any more (dropped). */
  readonly orphaned: number;
  readonly sent: number;
  readonly batches: number;
  /** Events the kernel's ring had no room for (all rules). */
  readonly kernelLost: number;
}
