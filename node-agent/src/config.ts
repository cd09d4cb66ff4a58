// The agent's configuration: FLEETWALL_* environment variables and command-line
// flags (flags win), parsed and validated once, returned frozen. The only
// module of the agent that reads process.env.

import { hostname } from 'node:os';
import { canonicalCidr } from '../../common/src/cidr.js';
import type { DefaultAction } from '../../common/src/policy.js';
import { DURATION_EXAMPLES, parseDurationMs as parseDuration } from '../../common/src/duration.js';
import { LabelTextError, parseLabelText } from '../../common/src/labels.js';
import { echo } from '../../common/src/echo.js';
import { interfaceNameProblem, nodeNameProblem } from '../../common/src/names.js';
import { MAX_COUNTER_SLOTS } from './datapath/datapath.js';

export type XdpModeSetting = 'auto' | 'native' | 'generic';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface AgentConfig {
  /** host:port of the control plane's gRPC endpoints; reconnects rotate through them. */
  readonly controlPlanes: readonly string[];
  readonly nodeName: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Interfaces to attach XDP ingress + TC egress to. */
  readonly interfaces: readonly string[];
  readonly defaultAction: DefaultAction;
  readonly pinPath: string;
  /** Folder with compiled BPF objects; undefined = the datapath's default. */
  readonly objDir: string | undefined;
  readonly counterIntervalMs: number;
  /** host:port for /healthz and /metrics; port 0 picks a free port. Empty: no HTTP server. */
  readonly httpAddr: string;
  /** The most prefixes a kernel table may hold (its maps follow the rules up to it); used only when the maps are created. */
  readonly capacityPrefixes: number | undefined;
  /** The most rule counter slots (= journal entries); used only when the maps are created. */
  readonly capacitySlots: number | undefined;
  readonly xdpMode: XdpModeSetting;
  /** Replace an XDP program that fleetwall did not attach (default: refuse, with an error naming it). */
  readonly replaceForeignXdp: boolean;
  /** Our own ping interval before the control plane announces one. */
  readonly pingIntervalMs: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  /** Written (JSON: pid, httpPort, ...) once the agent enforces and serves HTTP. */
  readonly readyFile: string | undefined;
  // Node identity (issue 15; identity/): TLS is on when any of these is set or the identity dir holds a certificate.
  /** A single-use join token "abcdef.0123456789abcdef" (fleetwall enroll create), for the first start. */
  readonly joinToken: string | undefined;
  /** Or a file holding it (read only when the agent has to enroll). */
  readonly joinTokenFile: string | undefined;
  /** Pins of the CA to trust when enrolling: "sha256:<hex of its SubjectPublicKeyInfo>". */
  readonly caCertHashes: readonly string[];
  /** Or the CA bundle itself (PEM file). */
  readonly caCertFile: string | undefined;
  /** Where the node's key, certificate and CA are kept (0700; files 0600). */
  readonly identityDir: string;
  /** The name to check in the control plane's certificate, when the address does not carry it (a unix socket: localhost). */
  readonly tlsServerName: string | undefined;
  /** Canonical CIDRs always allowed, ingress and egress, whatever the policy (besides the control planes' addresses). */
  readonly failsafeCidrs: readonly string[];
  readonly logLevel: LogLevel;
  /** Sampled drop events: the kernel budget (written at each start), the ring, the queue and the send interval. */
  readonly events: EventConfig;
}

export interface EventConfig {
  readonly enabled: boolean;
  /** Events per second per rule (split over the CPUs). */
  readonly ratePerSecond: number;
  readonly burst: number;
  /** Packet bytes captured per event (0..256). */
  readonly snapLen: number;
  /** Bytes of the kernel ring (power of two); used when the maps are created. */
  readonly ringBytes: number;
  /** Events the agent queues at most (oldest dropped first). */
  readonly queueSize: number;
  /** Events are read and sent at most this often (batching). */
  readonly intervalMs: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

interface Setting {
  readonly flag: string;
  readonly env: string;
  readonly help: string;
}

/** Every setting: flag, environment variable, meaning. Also the README's table. */
export const SETTINGS = {
  controlPlane: {
    flag: 'control-plane',
    env: 'FLEETWALL_CONTROL_PLANE',
    help: 'control plane gRPC address host:port or unix:/path, or several comma-separated (tried in turn; default localhost:50051)',
  },
  nodeName: { flag: 'node-name', env: 'FLEETWALL_NODE_NAME', help: 'node name (default: the hostname)' },
  labels: { flag: 'labels', env: 'FLEETWALL_LABELS', help: 'node labels k=v,k2=v2 (rule selectors match them)' },
  interfaces: { flag: 'interfaces', env: 'FLEETWALL_INTERFACES', help: 'interfaces to attach to, comma-separated (required)' },
  defaultAction: {
    flag: 'default-action',
    env: 'FLEETWALL_DEFAULT_ACTION',
    help: 'unmatched traffic: pass (default) or drop; takes effect when the maps are created',
  },
  pinPath: {
    flag: 'pin-path',
    env: 'FLEETWALL_PIN_PATH',
    help: 'bpffs folder for pinned maps, links and state (default /sys/fs/bpf/fleetwall)',
  },
  objDir: { flag: 'obj-dir', env: 'FLEETWALL_OBJ_DIR', help: 'folder with compiled *.bpf.o (default: the datapath default, bpf/obj)' },
  counterInterval: { flag: 'counter-interval', env: 'FLEETWALL_COUNTER_INTERVAL', help: 'counter read/report interval (default 1s)' },
  httpAddr: {
    flag: 'http-addr',
    env: 'FLEETWALL_HTTP_ADDR',
    help: 'host:port or unix:/path for /healthz and /metrics (default 127.0.0.1:9477; port 0 = any; "off" = none)',
  },
  capacityPrefixes: {
    flag: 'capacity-prefixes',
    env: 'FLEETWALL_CAPACITY_PREFIXES',
    help: 'the most prefixes a kernel table may hold (its maps grow to it as rules need; set when the maps are created; default: datapath default)',
  },
  capacitySlots: {
    flag: 'capacity-slots',
    env: 'FLEETWALL_CAPACITY_SLOTS',
    help: 'the most rule counter slots (grown to as rules need; set when the maps are created; default: datapath default)',
  },
  xdpMode: { flag: 'xdp-mode', env: 'FLEETWALL_XDP_MODE', help: 'auto (default), native or generic' },
  replaceForeignXdp: {
    flag: 'replace-foreign-xdp',
    env: 'FLEETWALL_REPLACE_FOREIGN_XDP',
    help: 'true: replace an XDP program fleetwall did not attach (default false: refuse and report it)',
  },
  pingInterval: {
    flag: 'ping-interval',
    env: 'FLEETWALL_PING_INTERVAL',
    help: 'ping interval until the control plane sets one (default 10s)',
  },
  reconnectMin: { flag: 'reconnect-min', env: 'FLEETWALL_RECONNECT_MIN', help: 'first reconnect backoff (default 250ms)' },
  reconnectMax: { flag: 'reconnect-max', env: 'FLEETWALL_RECONNECT_MAX', help: 'reconnect backoff cap (default 10s)' },
  readyFile: { flag: 'ready-file', env: 'FLEETWALL_READY_FILE', help: 'file written with {pid, httpPort} once enforcing' },
  joinToken: {
    flag: 'join-token',
    env: 'FLEETWALL_JOIN_TOKEN',
    help: 'single-use join token from `fleetwall enroll create` (first start; turns TLS on)',
  },
  joinTokenFile: { flag: 'join-token-file', env: 'FLEETWALL_JOIN_TOKEN_FILE', help: 'read the join token from this file instead' },
  caCertHash: {
    flag: 'ca-cert-hash',
    env: 'FLEETWALL_CA_CERT_HASH',
    help: 'pin(s) of the control plane CA, sha256:<hex>, comma-separated (printed by `fleetwall enroll create`)',
  },
  caCert: { flag: 'ca-cert', env: 'FLEETWALL_CA_CERT', help: 'the control plane CA bundle (PEM file), instead of a pin' },
  identityDir: {
    flag: 'identity-dir',
    env: 'FLEETWALL_IDENTITY_DIR',
    help: "the node's key, certificate and CA (default /var/lib/fleetwall-agent)",
  },
  tlsServerName: {
    flag: 'tls-server-name',
    env: 'FLEETWALL_TLS_SERVER_NAME',
    help: "name to check in the control plane's certificate (default: the address's host; localhost for unix:)",
  },
  failsafeCidrs: {
    flag: 'failsafe-cidrs',
    env: 'FLEETWALL_FAILSAFE_CIDRS',
    help: "CIDRs always allowed, ingress and egress, whatever the policy, comma-separated (default none; the control planes' addresses always are)",
  },
  logLevel: { flag: 'log-level', env: 'FLEETWALL_LOG_LEVEL', help: 'pino level (default info)' },
  events: { flag: 'events', env: 'FLEETWALL_EVENTS', help: 'sampled drop events: on (default) or off' },
  eventRate: { flag: 'event-rate', env: 'FLEETWALL_EVENT_RATE', help: 'drop events per second per rule at most (default 100)' },
  eventBurst: { flag: 'event-burst', env: 'FLEETWALL_EVENT_BURST', help: 'drop events a quiet rule may send at once (default 100)' },
  eventSnap: {
    flag: 'event-snap',
    env: 'FLEETWALL_EVENT_SNAP',
    help: 'packet bytes captured per drop event, 0..256 (default 0: headers only; pcap synthesizes them)',
  },
  eventRing: {
    flag: 'event-ring',
    env: 'FLEETWALL_EVENT_RING',
    help: 'bytes of the kernel event ring, a power of two (default 2097152); set when the maps are created',
  },
  eventQueue: { flag: 'event-queue', env: 'FLEETWALL_EVENT_QUEUE', help: 'drop events the agent queues at most (default 65536)' },
  eventInterval: {
    flag: 'event-interval',
    env: 'FLEETWALL_EVENT_INTERVAL',
    help: 'drop events are read and sent this often (default 50ms)',
  },
} as const satisfies Record<string, Setting>;

type Key = keyof typeof SETTINGS;

/** A duration setting ("250ms", "1s", "1h30m"; the grammar of common/src/duration.ts, unit required). */
export function parseDurationMs(text: string, what: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new ConfigError(`${what}: "${text}" is not a duration; use e.g. ${DURATION_EXAMPLES}`);
  return ms;
}

/** Node labels "k=v,k2=v2" (the grammar of common/src/labels.ts, shared with rule selectors). */
export function parseLabels(text: string, what: string): Record<string, string> {
  try {
    return parseLabelText(text);
  } catch (e) {
    if (e instanceof LabelTextError) throw new ConfigError(`${what}: ${e.message}`);
    throw e;
  }
}

function parsePositiveInt(text: string, what: string, max: number): number {
  if (!/^\d+$/.test(text.trim())) throw new ConfigError(`${what}: "${text}" is not a positive integer`);
  const n = Number(text.trim());
  if (n < 1 || n > max) throw new ConfigError(`${what}: ${n} is out of range 1..${max}`);
  return n;
}

function parseAddr(text: string, what: string): string {
  const t = text.trim();
  // A Unix socket (reachable across network namespaces): unix:/abs/path or unix:///abs/path.
  if (t.startsWith('unix:')) {
    const path = t.replace(/^unix:(\/\/)?/, '');
    if (!path.startsWith('/'))
      throw new ConfigError(`${what}: "${text}" must name an absolute socket path, e.g. unix:/run/fleetwall/cp.sock`);
    return `unix:${path}`;
  }
  const m = /^(\[[0-9a-fA-F:]+\]|[^\s:/]+):(\d{1,5})$/.exec(t);
  if (!m || Number(m[2]) > 65535) throw new ConfigError(`${what}: "${text}" is not host:port (e.g. localhost:50051, [::1]:50051)`);
  return t;
}

/** Parses `--flag value`, `--flag=value`. Unknown flags and stray arguments are errors. */
export function parseFlags(argv: readonly string[]): Partial<Record<Key, string>> {
  const byFlag = new Map<string, Key>();
  for (const [k, s] of Object.entries(SETTINGS)) byFlag.set(s.flag, k as Key);
  const out: Partial<Record<Key, string>> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new ConfigError(`unexpected argument "${a}"; flags are --name value (see --help)`);
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    const key = byFlag.get(name);
    if (!key) throw new ConfigError(`unknown flag --${name}; known: ${[...byFlag.keys()].map((f) => `--${f}`).join(' ')}`);
    let value: string;
    if (eq >= 0) value = a.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined) throw new ConfigError(`--${name} needs a value`);
      value = next;
      i++;
    }
    out[key] = value;
  }
  return out;
}

export function usage(): string {
  const lines = [
    'fleetwall agent [flags]        run the node agent',
    'fleetwall agent uninstall [--pin-path P]   detach and remove the pins',
    '',
    'flags (environment variable in brackets):',
  ];
  for (const s of Object.values(SETTINGS)) lines.push(`  --${s.flag.padEnd(18)} [${s.env}] ${s.help}`);
  return lines.join('\n');
}

/**
 * Builds the frozen config from flags and an environment (process.env by
 * default). Throws ConfigError naming the flag/variable and how to fix it.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const flags = parseFlags(argv);
  const raw = (k: Key): string | undefined => {
    const f = flags[k];
    if (f !== undefined) return f;
    const e = env[SETTINGS[k].env];
    return e === undefined || e === '' ? undefined : e;
  };
  const what = (k: Key): string => `--${SETTINGS[k].flag} / ${SETTINGS[k].env}`;

  const controlPlanes = (raw('controlPlane') ?? 'localhost:50051')
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '')
    .map((a) => parseAddr(a, what('controlPlane')));
  if (controlPlanes.length === 0) throw new ConfigError(`${what('controlPlane')}: give at least one host:port`);
  const nodeName = (raw('nodeName') ?? hostname()).trim();
  const nameProblem = nodeNameProblem(nodeName);
  if (nameProblem) throw new ConfigError(`${what('nodeName')}: ${echo(nodeName)}: ${nameProblem}`);
  const labels = Object.freeze(parseLabels(raw('labels') ?? '', what('labels')));
  const interfaces = (raw('interfaces') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (interfaces.length === 0)
    throw new ConfigError(`${what('interfaces')}: name at least one interface to enforce on, e.g. --interfaces eth0`);
  for (const i of interfaces) {
    const p = interfaceNameProblem(i);
    if (p) throw new ConfigError(`${what('interfaces')}: ${echo(i)} is not an interface name (${p})`);
  }
  if (new Set(interfaces).size !== interfaces.length) throw new ConfigError(`${what('interfaces')}: an interface is listed twice`);
  const da = raw('defaultAction') ?? 'pass';
  if (da !== 'pass' && da !== 'drop') throw new ConfigError(`${what('defaultAction')}: "${da}" must be pass or drop`);
  const pinPath = raw('pinPath') ?? '/sys/fs/bpf/fleetwall';
  if (!pinPath.startsWith('/')) throw new ConfigError(`${what('pinPath')}: "${pinPath}" must be an absolute path on a bpf filesystem`);
  const counterIntervalMs = parseDurationMs(raw('counterInterval') ?? '1s', what('counterInterval'));
  if (counterIntervalMs < 50 || counterIntervalMs > 3_600_000)
    throw new ConfigError(`${what('counterInterval')}: must be between 50ms and 1h`);
  const httpRaw = raw('httpAddr') ?? '127.0.0.1:9477';
  const httpAddr = httpRaw === 'off' ? '' : parseAddr(httpRaw, what('httpAddr'));
  const cp = raw('capacityPrefixes');
  const cs = raw('capacitySlots');
  const xdpMode = raw('xdpMode') ?? 'auto';
  if (xdpMode !== 'auto' && xdpMode !== 'native' && xdpMode !== 'generic')
    throw new ConfigError(`${what('xdpMode')}: "${xdpMode}" must be auto, native or generic`);
  const rf = raw('replaceForeignXdp') ?? 'false';
  if (rf !== 'true' && rf !== 'false') throw new ConfigError(`${what('replaceForeignXdp')}: "${rf}" must be true or false`);
  const pingIntervalMs = parseDurationMs(raw('pingInterval') ?? '10s', what('pingInterval'));
  if (pingIntervalMs < 100) throw new ConfigError(`${what('pingInterval')}: at least 100ms`);
  const reconnectMinMs = parseDurationMs(raw('reconnectMin') ?? '250ms', what('reconnectMin'));
  const reconnectMaxMs = parseDurationMs(raw('reconnectMax') ?? '10s', what('reconnectMax'));
  if (reconnectMinMs < 10) throw new ConfigError(`${what('reconnectMin')}: at least 10ms`);
  if (reconnectMaxMs < reconnectMinMs)
    throw new ConfigError(`${what('reconnectMax')}: must not be below ${SETTINGS.reconnectMin.flag} (${reconnectMinMs} ms)`);
  const failsafeCidrs = (raw('failsafeCidrs') ?? '')
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '')
    .map((c) => {
      try {
        return canonicalCidr(c);
      } catch (e) {
        throw new ConfigError(`${what('failsafeCidrs')}: ${(e as Error).message}`);
      }
    });
  const logLevel = raw('logLevel') ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError(`${what('logLevel')}: "${logLevel}" must be one of fatal error warn info debug trace silent`);
  }
  const identity = identitySettings(raw, what);
  const ev = raw('events') ?? 'on';
  if (ev !== 'on' && ev !== 'off') throw new ConfigError(`${what('events')}: "${ev}" must be on or off`);
  const snapText = raw('eventSnap') ?? '0';
  const snapLen = snapText.trim() === '0' ? 0 : parsePositiveInt(snapText, what('eventSnap'), 256);
  const ringBytes = parsePositiveInt(raw('eventRing') ?? '2097152', what('eventRing'), 1 << 30);
  if (ringBytes < 4096 || (ringBytes & (ringBytes - 1)) !== 0)
    throw new ConfigError(`${what('eventRing')}: ${ringBytes} must be a power of two of at least 4096`);
  const eventIntervalMs = parseDurationMs(raw('eventInterval') ?? '50ms', what('eventInterval'));
  if (eventIntervalMs < 1 || eventIntervalMs > 60_000) throw new ConfigError(`${what('eventInterval')}: must be between 1ms and 1m`);
  const events: EventConfig = Object.freeze({
    enabled: ev === 'on',
    ratePerSecond: parsePositiveInt(raw('eventRate') ?? '100', what('eventRate'), 1_000_000),
    burst: parsePositiveInt(raw('eventBurst') ?? '100', what('eventBurst'), 1_000_000),
    snapLen,
    ringBytes,
    queueSize: parsePositiveInt(raw('eventQueue') ?? '65536', what('eventQueue'), 1 << 22),
    intervalMs: eventIntervalMs,
  });
  return Object.freeze({
    ...identity,
    events,
    controlPlanes: Object.freeze(controlPlanes),
    nodeName,
    labels,
    interfaces: Object.freeze(interfaces),
    defaultAction: da,
    pinPath,
    objDir: raw('objDir'),
    counterIntervalMs,
    httpAddr,
    capacityPrefixes: cp === undefined ? undefined : parsePositiveInt(cp, what('capacityPrefixes'), 1 << 26),
    capacitySlots: cs === undefined ? undefined : parsePositiveInt(cs, what('capacitySlots'), MAX_COUNTER_SLOTS),
    xdpMode,
    replaceForeignXdp: rf === 'true',
    pingIntervalMs,
    reconnectMinMs,
    reconnectMaxMs,
    readyFile: raw('readyFile'),
    failsafeCidrs: Object.freeze([...new Set(failsafeCidrs)]),
    logLevel: logLevel as LogLevel,
  });
}

const JOIN_TOKEN_RE = /^[a-z0-9]{6}\.[a-z0-9]{16}$/;

/** The shape of a join token (abcdef.0123456789abcdef). */
export function isJoinToken(text: string): boolean {
  return JOIN_TOKEN_RE.test(text);
}

function identitySettings(
  raw: (k: Key) => string | undefined,
  what: (k: Key) => string,
): Pick<AgentConfig, 'joinToken' | 'joinTokenFile' | 'caCertHashes' | 'caCertFile' | 'identityDir' | 'tlsServerName'> {
  const joinToken = raw('joinToken')?.trim();
  const joinTokenFile = raw('joinTokenFile');
  if (joinToken !== undefined && joinTokenFile !== undefined)
    throw new ConfigError(`${what('joinToken')} and ${what('joinTokenFile')}: give one of them`);
  if (joinToken !== undefined && !isJoinToken(joinToken))
    throw new ConfigError(`${what('joinToken')}: not a join token (abcdef.0123456789abcdef, from \`fleetwall enroll create\`)`);
  const caCertHashes = (raw('caCertHash') ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== '');
  for (const h of caCertHashes)
    if (!/^sha256:[0-9a-f]{64}$/.test(h))
      throw new ConfigError(`${what('caCertHash')}: "${h}" is not sha256:<64 hex digits> (printed by \`fleetwall enroll create\`)`);
  const identityDir = raw('identityDir') ?? '/var/lib/fleetwall-agent';
  if (!identityDir.startsWith('/')) throw new ConfigError(`${what('identityDir')}: "${identityDir}" must be an absolute path`);
  return {
    joinToken,
    joinTokenFile,
    caCertHashes: Object.freeze(caCertHashes),
    caCertFile: raw('caCert'),
    identityDir,
    tlsServerName: raw('tlsServerName'),
  };
}

/** The pin path alone, for `fleetwall agent uninstall` (no interfaces needed). */
export function loadUninstallConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { pinPath: string; objDir: string | undefined; logLevel: LogLevel } {
  const flags = parseFlags(argv);
  const pinPath = flags.pinPath ?? env[SETTINGS.pinPath.env] ?? '/sys/fs/bpf/fleetwall';
  if (!pinPath.startsWith('/')) throw new ConfigError(`--pin-path: "${pinPath}" must be absolute`);
  const logLevel = (flags.logLevel ?? env[SETTINGS.logLevel.env] ?? 'info') as LogLevel;
  return Object.freeze({ pinPath, objDir: flags.objDir ?? env[SETTINGS.objDir.env], logLevel });
}
