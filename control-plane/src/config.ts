// The control plane's configuration: FLEETWALL_* environment variables (and
// DATABASE_URL) overridden by command-line flags, parsed and validated once
// into a frozen object. Nothing else in control-plane/ reads process.env.
//
// Every option has an environment name and a flag (the env name without the
// FLEETWALL_ prefix, lower-case, dashes): FLEETWALL_GRPC_PORT / --grpc-port.
// Durations take a unit: 250ms, 10s, 1h30m, 7d (common/src/duration.ts).
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { canonicalCidr } from '../../common/src/cidr.js';
import { parseDurationMs } from '../../common/src/duration.js';

export interface Config {
  /** gRPC listen address and port (0: any free port, reported by startControlPlane). */
  readonly grpcHost: string;
  readonly grpcPort: number;
  /** HTTP (/metrics, /healthz, JSON API) listen address and port. */
  readonly httpHost: string;
  readonly httpPort: number;
  /** Postgres to use; undefined: start an embedded Postgres under dataDir. */
  readonly databaseUrl: string | undefined;
  /** A file holding the database password (docker secrets, systemd credentials), instead of one in DATABASE_URL. */
  readonly databasePasswordFile: string | undefined;
  /** Where the embedded Postgres keeps its data (kept across restarts). */
  readonly dataDir: string;
  /** Port of the embedded Postgres; 0 picks a free one. */
  readonly embeddedPostgresPort: number;
  /** Names this process in SyncStart, Node.control_plane_id and logs. */
  readonly controlPlaneId: string;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** Postgres connections in the pool for writes and the sync feed (LISTEN uses one more). */
  readonly dbPoolSize: number;
  /** Postgres connections for reads and health checks, so reads never wait for a write's connection. */
  readonly dbReadPoolSize: number;
  /** statement_timeout of every pooled connection (an import's COPY gets the import deadline). */
  readonly dbStatementTimeoutMs: number;
  /** idle_in_transaction_session_timeout of every pooled connection. */
  readonly dbIdleInTransactionTimeoutMs: number;
  /** Server-side deadline of every unary call (gRPC and HTTP); a client's shorter deadline wins. */
  readonly callTimeoutMs: number;
  /** HTTP/2 streams one gRPC connection may have open (each agent uses one). */
  readonly grpcMaxConcurrentStreams: number;
  /** Most entries in BatchCreateRules / BatchDeleteRules. */
  readonly maxBatch: number;
  /** Most lines in one ImportRules stream. */
  readonly maxImportLines: number;
  /** Most bytes of lines in one ImportRules stream (the import is held in memory until it ends). */
  readonly maxImportBytes: number;
  /** Imports one process runs at once; more: RESOURCE_EXHAUSTED TOO_MANY_IMPORTS. */
  readonly maxConcurrentImports: number;
  /** An import stream that sends nothing for this long is ended (DEADLINE_EXCEEDED IMPORT_TIMEOUT). */
  readonly importIdleTimeoutMs: number;
  /** An import ends (nothing stored) if it has not committed this long after it started. */
  readonly importTimeoutMs: number;
  /** Largest gRPC message accepted (bigger: RESOURCE_EXHAUSTED MESSAGE_TOO_LARGE). */
  readonly maxMessageBytes: number;
  /** Longest rule comment, in characters. */
  readonly maxCommentLength: number;
  /** How long change-log rows are kept; an agent resuming from before gets a snapshot. */
  readonly changeRetentionMs: number;
  /** How often the retention pruner runs. */
  readonly retentionPruneIntervalMs: number;
  /** Resume at most this many revisions back; further: snapshot. */
  readonly resumeMaxRevisions: number;
  /** Resume windows with more changed rules than this get a snapshot. */
  readonly resumeMaxChanges: number;
  /** Ping interval on Sync streams; a peer silent for 3 intervals is dropped. */
  readonly pingIntervalMs: number;
  /** How often node state (ACKs, last seen) is written to Postgres. */
  readonly nodeFlushIntervalMs: number;
  /** How often counter totals are written to Postgres. */
  readonly counterFlushIntervalMs: number;
  /** How often expired rules are swept (must stay well under 1 s). */
  readonly expirySweepIntervalMs: number;
  /** Safety poll of the change log in case a NOTIFY was missed. */
  readonly feedPollIntervalMs: number;
  /** Per-rule fleet totals exported on /metrics: the top N rules by packets. */
  readonly metricsTopRules: number;
  /** Target size of one SnapshotChunk / Delta part on the wire. */
  readonly syncChunkBytes: number;
  /** Bytes queued to one agent before it is dropped as too slow (RESOURCE_EXHAUSTED AGENT_TOO_SLOW). */
  readonly maxAgentQueueBytes: number;
  /** An agent whose oldest queued message waited this long is dropped as too slow. */
  readonly maxAgentLagMs: number;
  /** A node disconnected for this long is removed with its counters. */
  readonly nodeRetentionMs: number;
  /** How often nodes past the retention are removed. */
  readonly nodeGcIntervalMs: number;
  /** How long a Sync stream may take to send its Hello. */
  readonly helloTimeoutMs: number;
  // Trust (issue 15): auth/security-mode.ts decides the mode from these.
  /** TLS and authentication on both ports even on a loopback bind (any other bind turns them on anyway). */
  readonly tls: boolean;
  /** Lab switch: no TLS, no authentication, on any bind; warned at every start and shown on /healthz. */
  readonly insecureNoAuth: boolean;
  /** Operator-given server certificate (PEM chain) and key; unset: the control plane's own PKI under dataDir/pki. */
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  /** Operator-given CA bundle (PEM, several certificates during a rollover): what clients and nodes are told to trust. */
  readonly tlsCaFile: string | undefined;
  /** Extra subject alternative names (DNS names or IP addresses) for the server certificate the control plane issues itself. */
  readonly tlsSans: readonly string[];
  /** How often certificate files are checked for changes (a changed file is served without a restart). */
  readonly tlsReloadIntervalMs: number;
  /** Host header names accepted on a loopback HTTP bind besides localhost, 127.0.0.1 and [::1] (DNS rebinding guard). */
  readonly httpAllowedHosts: readonly string[];
  /** How long a verified API token is trusted before Postgres is asked again (revocations are also pushed by NOTIFY). */
  readonly authCacheTtlMs: number;
  /** The longest a refusal to a peer that keeps failing authentication is held back (0: never). */
  readonly authPenaltyMaxMs: number;
  /** How long a node client certificate issued at enrollment or renewal is valid (agents renew at half of it). */
  readonly nodeCertTtlMs: number;
  /** How often this process looks for subscribed lists due a refresh. */
  readonly listPollIntervalMs: number;
  /** The shortest refresh interval a list may ask for. */
  readonly listMinEveryMs: number;
  /** A list's fetch (connect, headers and the whole body) must finish within this. */
  readonly listFetchTimeoutMs: number;
  /** Largest list body accepted (bytes, after decompression). */
  readonly listMaxBytes: number;
  /** A refresh with more invalid lines than this share (percent of data lines) is refused. */
  readonly listMaxInvalidPercent: number;
  /** A refresh that would remove more than this share (percent) of a list's rules at once is refused. */
  readonly listMaxShrinkPercent: number;
  /** After a failed or refused refresh, the next try (at most the list's own interval). */
  readonly listRetryIntervalMs: number;
  /** The directory on this host whose files lists may read (file:// sources); unset: file sources are refused. */
  readonly listFileRoot: string | undefined;
  // The lockout guard (issue 15 part 5): lockout/.
  /** Management networks no deny may cover (besides loopback, the listen addresses and the agents' connect addresses). */
  readonly protectedCidrs: readonly string[];
  /** How long the agents' connect addresses read from the store are trusted (other processes' agents). */
  readonly protectedRefreshMs: number;
  /** Drop events each process keeps (for `since` and TopSources; also kept 10 minutes at most). */
  readonly eventHistory: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Kind = 'string' | 'port' | 'int' | 'duration' | 'level' | 'url' | 'bool' | 'list';

interface OptionSpec {
  readonly key: keyof Config;
  readonly env: string;
  readonly kind: Kind;
  readonly def: string | undefined;
  readonly min?: number;
  readonly max?: number;
  readonly help: string;
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const OPTIONS: readonly OptionSpec[] = [
  {
    key: 'grpcHost',
    env: 'FLEETWALL_GRPC_HOST',
    kind: 'string',
    def: '127.0.0.1',
    help: 'gRPC listen address (anything but loopback turns TLS and authentication on)',
  },
  { key: 'grpcPort', env: 'FLEETWALL_GRPC_PORT', kind: 'port', def: '50051', help: 'gRPC port (0: any free port)' },
  {
    key: 'httpHost',
    env: 'FLEETWALL_HTTP_HOST',
    kind: 'string',
    def: '127.0.0.1',
    help: 'HTTP listen address (anything but loopback turns TLS and authentication on)',
  },
  {
    key: 'httpPort',
    env: 'FLEETWALL_HTTP_PORT',
    kind: 'port',
    def: '8080',
    help: 'HTTP port for /metrics, /healthz, JSON API (0: any free port)',
  },
  {
    key: 'databaseUrl',
    env: 'DATABASE_URL',
    kind: 'url',
    def: undefined,
    help: 'Postgres URL; unset: embedded Postgres under the data dir',
  },
  {
    key: 'databasePasswordFile',
    env: 'FLEETWALL_DATABASE_PASSWORD_FILE',
    kind: 'string',
    def: undefined,
    help: 'file with the Postgres password (read at connect), instead of one in DATABASE_URL',
  },
  { key: 'dataDir', env: 'FLEETWALL_DATA_DIR', kind: 'string', def: '.fleetwall', help: 'embedded Postgres data directory' },
  {
    key: 'embeddedPostgresPort',
    env: 'FLEETWALL_EMBEDDED_PG_PORT',
    kind: 'port',
    def: '0',
    help: 'embedded Postgres port (0: a free one)',
  },
  {
    key: 'controlPlaneId',
    env: 'FLEETWALL_CONTROL_PLANE_ID',
    kind: 'string',
    def: undefined,
    help: "this process's id (default host-pid-random)",
  },
  { key: 'logLevel', env: 'FLEETWALL_LOG_LEVEL', kind: 'level', def: 'info', help: LEVELS.join('|') },
  { key: 'dbPoolSize', env: 'FLEETWALL_DB_POOL_SIZE', kind: 'int', def: '10', min: 2, max: 200, help: 'Postgres connections for writes' },
  {
    key: 'dbReadPoolSize',
    env: 'FLEETWALL_DB_READ_POOL_SIZE',
    kind: 'int',
    def: '4',
    min: 1,
    max: 100,
    help: 'Postgres connections for reads and health checks',
  },
  {
    key: 'dbStatementTimeoutMs',
    env: 'FLEETWALL_DB_STATEMENT_TIMEOUT',
    kind: 'duration',
    def: '60s',
    min: 100,
    help: 'statement_timeout of pooled connections',
  },
  {
    key: 'dbIdleInTransactionTimeoutMs',
    env: 'FLEETWALL_DB_IDLE_IN_TRANSACTION_TIMEOUT',
    kind: 'duration',
    def: '10s',
    min: 100,
    help: 'idle_in_transaction_session_timeout of pooled connections',
  },
  {
    key: 'callTimeoutMs',
    env: 'FLEETWALL_CALL_TIMEOUT',
    kind: 'duration',
    def: '30s',
    min: 100,
    help: 'server-side deadline of every unary call',
  },
  {
    key: 'grpcMaxConcurrentStreams',
    env: 'FLEETWALL_GRPC_MAX_CONCURRENT_STREAMS',
    kind: 'int',
    def: '1000',
    min: 1,
    max: 100_000,
    help: 'HTTP/2 streams per gRPC connection',
  },
  {
    key: 'maxBatch',
    env: 'FLEETWALL_MAX_BATCH',
    kind: 'int',
    def: '1000',
    min: 1,
    max: 1_000_000,
    help: 'most entries in a batch create/delete',
  },
  {
    key: 'maxImportLines',
    env: 'FLEETWALL_MAX_IMPORT_LINES',
    kind: 'int',
    def: '2000000',
    min: 1,
    max: 50_000_000,
    help: 'most lines in one import',
  },
  {
    key: 'maxImportBytes',
    env: 'FLEETWALL_MAX_IMPORT_BYTES',
    kind: 'int',
    def: String(128 * 1024 * 1024),
    min: 1024,
    max: 8 * 1024 * 1024 * 1024,
    help: 'most bytes of lines in one import',
  },
  {
    key: 'maxConcurrentImports',
    env: 'FLEETWALL_MAX_CONCURRENT_IMPORTS',
    kind: 'int',
    def: '2',
    min: 1,
    max: 1000,
    help: 'imports one process runs at once',
  },
  {
    key: 'importIdleTimeoutMs',
    env: 'FLEETWALL_IMPORT_IDLE_TIMEOUT',
    kind: 'duration',
    def: '30s',
    min: 10,
    help: 'an import stream idle this long is ended',
  },
  {
    key: 'importTimeoutMs',
    env: 'FLEETWALL_IMPORT_TIMEOUT',
    kind: 'duration',
    def: '10m',
    min: 100,
    help: 'an import not committed this long after its start is ended',
  },
  {
    key: 'maxMessageBytes',
    env: 'FLEETWALL_MAX_MESSAGE_BYTES',
    kind: 'int',
    def: String(4 * 1024 * 1024),
    min: 1024,
    max: 512 * 1024 * 1024,
    help: 'largest gRPC message accepted',
  },
  {
    key: 'maxCommentLength',
    env: 'FLEETWALL_MAX_COMMENT_LENGTH',
    kind: 'int',
    def: '1024',
    min: 0,
    max: 1_000_000,
    help: 'longest rule comment',
  },
  { key: 'changeRetentionMs', env: 'FLEETWALL_CHANGE_RETENTION', kind: 'duration', def: '24h', min: 1000, help: 'change-log retention' },
  {
    key: 'retentionPruneIntervalMs',
    env: 'FLEETWALL_RETENTION_PRUNE_INTERVAL',
    kind: 'duration',
    def: '1m',
    min: 100,
    help: 'how often old change-log rows are pruned',
  },
  {
    key: 'resumeMaxRevisions',
    env: 'FLEETWALL_RESUME_MAX_REVISIONS',
    kind: 'int',
    def: '10000',
    min: 0,
    max: 10_000_000,
    help: 'resume at most this many revisions back',
  },
  {
    key: 'resumeMaxChanges',
    env: 'FLEETWALL_RESUME_MAX_CHANGES',
    kind: 'int',
    def: '100000',
    min: 0,
    max: 100_000_000,
    help: 'resume windows with more changes get a snapshot',
  },
  { key: 'pingIntervalMs', env: 'FLEETWALL_PING_INTERVAL', kind: 'duration', def: '10s', min: 50, help: 'Sync ping interval' },
  {
    key: 'nodeFlushIntervalMs',
    env: 'FLEETWALL_NODE_FLUSH_INTERVAL',
    kind: 'duration',
    def: '1s',
    min: 10,
    help: 'node state write-back interval',
  },
  {
    key: 'counterFlushIntervalMs',
    env: 'FLEETWALL_COUNTER_FLUSH_INTERVAL',
    kind: 'duration',
    def: '2s',
    min: 10,
    help: 'counter totals write-back interval',
  },
  {
    key: 'expirySweepIntervalMs',
    env: 'FLEETWALL_EXPIRY_SWEEP_INTERVAL',
    kind: 'duration',
    def: '200ms',
    min: 10,
    max: 900,
    help: 'expired-rule sweep interval',
  },
  { key: 'feedPollIntervalMs', env: 'FLEETWALL_FEED_POLL_INTERVAL', kind: 'duration', def: '1s', min: 10, help: 'change-log safety poll' },
  {
    key: 'metricsTopRules',
    env: 'FLEETWALL_METRICS_TOP_RULES',
    kind: 'int',
    def: '50',
    min: 0,
    max: 10_000,
    help: 'per-rule series on /metrics',
  },
  {
    key: 'syncChunkBytes',
    env: 'FLEETWALL_SYNC_CHUNK_BYTES',
    kind: 'int',
    def: String(1024 * 1024),
    min: 256,
    max: 16 * 1024 * 1024,
    help: 'target bytes per snapshot chunk / delta part',
  },
  {
    key: 'maxAgentQueueBytes',
    env: 'FLEETWALL_MAX_AGENT_QUEUE_BYTES',
    kind: 'int',
    def: String(256 * 1024 * 1024),
    min: 64 * 1024,
    max: 64 * 1024 * 1024 * 1024,
    help: 'bytes queued to one agent before it is dropped as too slow',
  },
  {
    key: 'maxAgentLagMs',
    env: 'FLEETWALL_MAX_AGENT_LAG',
    kind: 'duration',
    def: '60s',
    min: 50,
    help: 'an agent whose oldest queued message waited this long is dropped',
  },
  {
    key: 'nodeRetentionMs',
    env: 'FLEETWALL_NODE_RETENTION',
    kind: 'duration',
    def: '7d',
    min: 1000,
    help: 'disconnected nodes are removed after this long',
  },
  {
    key: 'nodeGcIntervalMs',
    env: 'FLEETWALL_NODE_GC_INTERVAL',
    kind: 'duration',
    def: '1m',
    min: 10,
    help: 'how often nodes past the retention are removed',
  },
  { key: 'helloTimeoutMs', env: 'FLEETWALL_HELLO_TIMEOUT', kind: 'duration', def: '10s', min: 10, help: 'time allowed for a Sync Hello' },
  { key: 'tls', env: 'FLEETWALL_TLS', kind: 'bool', def: 'false', help: 'TLS + authentication on a loopback bind too (--tls)' },
  {
    key: 'insecureNoAuth',
    env: 'FLEETWALL_INSECURE_NO_AUTH',
    kind: 'bool',
    def: 'false',
    help: 'labs only: no TLS, no authentication on any bind (warned at start, shown on /healthz)',
  },
  {
    key: 'tlsCertFile',
    env: 'FLEETWALL_TLS_CERT',
    kind: 'string',
    def: undefined,
    help: 'server certificate chain (PEM); default: own PKI',
  },
  { key: 'tlsKeyFile', env: 'FLEETWALL_TLS_KEY', kind: 'string', def: undefined, help: 'server private key (PEM), with --tls-cert' },
  {
    key: 'tlsCaFile',
    env: 'FLEETWALL_TLS_CA',
    kind: 'string',
    def: undefined,
    help: 'CA bundle (PEM) clients and nodes trust, with --tls-cert',
  },
  {
    key: 'tlsSans',
    env: 'FLEETWALL_TLS_SAN',
    kind: 'list',
    def: '',
    help: 'extra DNS names / IPs for the own server certificate (comma-separated)',
  },
  {
    key: 'tlsReloadIntervalMs',
    env: 'FLEETWALL_TLS_RELOAD_INTERVAL',
    kind: 'duration',
    def: '5s',
    min: 20,
    help: 'how often certificate files are checked for changes',
  },
  {
    key: 'httpAllowedHosts',
    env: 'FLEETWALL_HTTP_ALLOWED_HOSTS',
    kind: 'list',
    def: '',
    help: 'Host header names accepted on a loopback HTTP bind besides localhost, 127.0.0.1, [::1] (comma-separated)',
  },
  {
    key: 'authCacheTtlMs',
    env: 'FLEETWALL_AUTH_CACHE_TTL',
    kind: 'duration',
    def: '500ms',
    min: 0,
    max: 1000,
    help: 'how long a verified API token is trusted before the store is asked again',
  },
  {
    key: 'authPenaltyMaxMs',
    env: 'FLEETWALL_AUTH_PENALTY_MAX',
    kind: 'duration',
    def: '5s',
    min: 0,
    max: 60_000,
    help: 'longest hold-back of refusals to a peer that keeps failing authentication (0s: none)',
  },
  {
    key: 'nodeCertTtlMs',
    env: 'FLEETWALL_NODE_CERT_TTL',
    kind: 'duration',
    def: '24h',
    min: 2000,
    max: 365 * 86_400_000,
    help: 'validity of node client certificates (agents renew them at half of it)',
  },
  {
    key: 'listPollIntervalMs',
    env: 'FLEETWALL_LIST_POLL_INTERVAL',
    kind: 'duration',
    def: '10s',
    min: 50,
    help: 'how often subscribed lists due a refresh are looked for',
  },
  {
    key: 'listMinEveryMs',
    env: 'FLEETWALL_LIST_MIN_EVERY',
    kind: 'duration',
    def: '1m',
    min: 100,
    help: 'shortest refresh interval a list may ask for',
  },
  {
    key: 'listFetchTimeoutMs',
    env: 'FLEETWALL_LIST_FETCH_TIMEOUT',
    kind: 'duration',
    def: '60s',
    min: 50,
    help: "a list's whole fetch must finish within this",
  },
  {
    key: 'listMaxBytes',
    env: 'FLEETWALL_LIST_MAX_BYTES',
    kind: 'int',
    def: String(256 * 1024 * 1024),
    min: 1024,
    max: 16 * 1024 * 1024 * 1024,
    help: 'largest list body accepted (bytes)',
  },
  {
    key: 'listMaxInvalidPercent',
    env: 'FLEETWALL_LIST_MAX_INVALID_PERCENT',
    kind: 'int',
    def: '10',
    min: 0,
    max: 100,
    help: 'refuse a refresh with more invalid lines than this percent of its data lines',
  },
  {
    key: 'listMaxShrinkPercent',
    env: 'FLEETWALL_LIST_MAX_SHRINK_PERCENT',
    kind: 'int',
    def: '25',
    min: 0,
    max: 100,
    help: "refuse a refresh that removes more than this percent of a list's rules",
  },
  {
    key: 'listRetryIntervalMs',
    env: 'FLEETWALL_LIST_RETRY_INTERVAL',
    kind: 'duration',
    def: '10m',
    min: 50,
    help: "retry a failed or refused refresh after this (at most the list's interval)",
  },
  {
    key: 'listFileRoot',
    env: 'FLEETWALL_LIST_FILE_ROOT',
    kind: 'string',
    def: undefined,
    help: 'directory on this host whose files lists may read (file:// sources); unset: refused',
  },
  {
    key: 'protectedCidrs',
    env: 'FLEETWALL_PROTECTED_CIDRS',
    kind: 'list',
    def: '',
    help: "management networks no deny may cover without an admin's force (comma-separated CIDRs; loopback, the listen addresses and the agents' addresses are protected anyway)",
  },
  {
    key: 'protectedRefreshMs',
    env: 'FLEETWALL_PROTECTED_REFRESH',
    kind: 'duration',
    def: '1s',
    min: 0,
    max: 60_000,
    help: "how long the agents' connect addresses read from the store are trusted by the lockout guard",
  },
  {
    key: 'eventHistory',
    env: 'FLEETWALL_EVENT_HISTORY',
    kind: 'int',
    def: '100000',
    min: 1,
    max: 10_000_000,
    help: 'drop events kept per process (10 minutes at most) for since and top sources',
  },
];

export const CONFIG_USAGE = [
  'fleetwall control-plane [--flag value | --flag=value]...',
  '',
  ...OPTIONS.map((o) => `  --${flagName(o)}  (${o.env}${o.def !== undefined ? `, default ${o.def}` : ''}) ${o.help}`),
].join('\n');

function flagName(o: OptionSpec): string {
  return o.env
    .replace(/^FLEETWALL_/, '')
    .toLowerCase()
    .replace(/_/g, '-');
}

export { parseDurationMs };

function parseValue(o: OptionSpec, raw: string, source: string): unknown {
  const bad = (why: string): never => {
    throw new ConfigError(`${source}=${JSON.stringify(raw)}: ${why}`);
  };
  switch (o.kind) {
    case 'string':
      if (raw.trim() === '') bad('must not be empty');
      return raw;
    case 'bool':
      if (!/^(true|false|1|0|yes|no)$/i.test(raw)) bad('expected true or false');
      return /^(true|1|yes)$/i.test(raw);
    case 'list':
      return Object.freeze(
        raw
          .split(',')
          .map((x) => x.trim())
          .filter((x) => x !== ''),
      );
    case 'url':
      if (!/^postgres(ql)?:\/\//.test(raw)) bad('expected a postgres:// or postgresql:// URL');
      return raw;
    case 'level':
      if (!(LEVELS as readonly string[]).includes(raw)) bad(`expected one of ${LEVELS.join(', ')}`);
      return raw;
    case 'port': {
      if (!/^\d+$/.test(raw) || Number(raw) > 65535) bad('expected a port number 0..65535 (0: any free port)');
      return Number(raw);
    }
    case 'int': {
      if (!/^\d+$/.test(raw)) bad('expected a whole number');
      const v = Number(raw);
      if (o.min !== undefined && v < o.min) bad(`must be at least ${o.min}`);
      if (o.max !== undefined && v > o.max) bad(`must be at most ${o.max}`);
      return v;
    }
    case 'duration': {
      const v = parseDurationMs(raw);
      if (v === undefined) bad('expected a duration with a unit, like 250ms, 10s, 5m, 24h or 7d');
      if (o.min !== undefined && v! < o.min) bad(`must be at least ${o.min}ms`);
      if (o.max !== undefined && v! > o.max) bad(`must be at most ${o.max}ms`);
      return v;
    }
  }
}

export interface ParsedArgs {
  readonly config: Config;
  readonly help: boolean;
}

/**
 * Parses flags over environment variables over defaults. Pure: pass the
 * environment in. Throws ConfigError with a message naming the bad setting.
 */
export function parseConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParsedArgs {
  const raw = new Map<keyof Config, { value: string; source: string }>();
  for (const o of OPTIONS) {
    const v = env[o.env];
    if (v !== undefined && v !== '') raw.set(o.key, { value: v, source: o.env });
  }
  const byFlag = new Map(OPTIONS.map((o) => [flagName(o), o]));
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}; flags look like --grpc-port 50051`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq >= 0 ? eq : undefined);
    const o = byFlag.get(name);
    if (!o) throw new ConfigError(`unknown flag --${name}; known flags:\n${CONFIG_USAGE}`);
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (o.kind === 'bool')
      value = 'true'; // `--tls` alone; `--tls=false` to turn off
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new ConfigError(`--${name} needs a value`);
      value = next;
      i++;
    }
    raw.set(o.key, { value, source: `--${name}` });
  }
  const out: Record<string, unknown> = {};
  for (const o of OPTIONS) {
    const r = raw.get(o.key);
    if (r) out[o.key] = parseValue(o, r.value, r.source);
    else if (o.def !== undefined) out[o.key] = parseValue(o, o.def, `default ${o.env}`);
    else out[o.key] = undefined;
  }
  if (out.controlPlaneId === undefined) {
    out.controlPlaneId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  }
  out.dataDir = resolve(out.dataDir as string);
  if (out.listFileRoot !== undefined) out.listFileRoot = resolve(out.listFileRoot as string);
  const config = out as unknown as Config;
  if (config.expirySweepIntervalMs >= 1000) throw new ConfigError('FLEETWALL_EXPIRY_SWEEP_INTERVAL must be under 1s');
  checkTlsSettings(config);
  checkProtectedCidrs(config);
  return { config: Object.freeze(config), help };
}

/** TLS settings that only make sense together. */
function checkTlsSettings(c: Config): void {
  if ((c.tlsCertFile === undefined) !== (c.tlsKeyFile === undefined))
    throw new ConfigError(
      'FLEETWALL_TLS_CERT and FLEETWALL_TLS_KEY (--tls-cert, --tls-key) go together: give both, or neither for the own PKI',
    );
  if (c.tlsCaFile !== undefined && c.tlsCertFile === undefined)
    throw new ConfigError('FLEETWALL_TLS_CA (--tls-ca) is the CA of an operator-given certificate: give --tls-cert and --tls-key with it');
  if (c.insecureNoAuth && (c.tls || c.tlsCertFile !== undefined))
    throw new ConfigError('--insecure-no-auth turns TLS and authentication off: it cannot go with --tls or --tls-cert');
}

/** --protected-cidrs: canonical CIDRs only (a bare address is a /32 or /128). */
function checkProtectedCidrs(c: Config): void {
  const out: string[] = [];
  for (const x of c.protectedCidrs) {
    try {
      out.push(canonicalCidr(x));
    } catch (e) {
      throw new ConfigError(`FLEETWALL_PROTECTED_CIDRS (--protected-cidrs): ${(e as Error).message}`);
    }
  }
  (c as { protectedCidrs: readonly string[] }).protectedCidrs = Object.freeze(out);
}

/** The configuration from this process's flags and environment. */
export function loadConfig(argv: readonly string[]): ParsedArgs {
  return parseConfig(argv, process.env);
}

/** A configuration with defaults for anything not given; for tests and embedding. */
export function configWith(overrides: Partial<Config>, env: Readonly<Record<string, string | undefined>> = {}): Config {
  const base = parseConfig([], env).config;
  return Object.freeze({ ...base, ...overrides });
}
