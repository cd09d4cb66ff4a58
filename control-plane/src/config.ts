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
  /** Where the embedded Postgres keeps its data (kept across restarts). */
  readonly dataDir: string;
  /** Port of the embedded Postgres; 0 picks a free one. */
  readonly embeddedPostgresPort: number;
  /** Names this process in SyncStart, Node.control_plane_id and logs. */
  readonly controlPlaneId: string;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** Postgres connections in the pool (LISTEN uses one more). */
  readonly dbPoolSize: number;
  /** Most entries in BatchCreateRules / BatchDeleteRules. */
  readonly maxBatch: number;
  /** Most lines in one ImportRules stream. */
  readonly maxImportLines: number;
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
  /** Messages queued to one agent before it is dropped as too slow. */
  readonly maxAgentQueue: number;
  /** How long a Sync stream may take to send its Hello. */
  readonly helloTimeoutMs: number;
  /** Drop events each process keeps (for `since` and TopSources; also kept 10 minutes at most). */
  readonly eventHistory: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Kind = 'string' | 'port' | 'int' | 'duration' | 'level' | 'url';

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
  { key: 'grpcHost', env: 'FLEETWALL_GRPC_HOST', kind: 'string', def: '0.0.0.0', help: 'gRPC listen address' },
  { key: 'grpcPort', env: 'FLEETWALL_GRPC_PORT', kind: 'port', def: '50051', help: 'gRPC port (0: any free port)' },
  { key: 'httpHost', env: 'FLEETWALL_HTTP_HOST', kind: 'string', def: '0.0.0.0', help: 'HTTP listen address' },
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
  { key: 'dbPoolSize', env: 'FLEETWALL_DB_POOL_SIZE', kind: 'int', def: '10', min: 2, max: 200, help: 'Postgres connections' },
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
    key: 'maxAgentQueue',
    env: 'FLEETWALL_MAX_AGENT_QUEUE',
    kind: 'int',
    def: '20000',
    min: 10,
    max: 10_000_000,
    help: 'queued messages before a slow agent is dropped',
  },
  { key: 'helloTimeoutMs', env: 'FLEETWALL_HELLO_TIMEOUT', kind: 'duration', def: '10s', min: 10, help: 'time allowed for a Sync Hello' },
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
  const config = out as unknown as Config;
  if (config.expirySweepIntervalMs >= 1000) throw new ConfigError('FLEETWALL_EXPIRY_SWEEP_INTERVAL must be under 1s');
  return { config: Object.freeze(config), help };
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
