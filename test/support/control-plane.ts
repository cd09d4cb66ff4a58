// Real control planes for tests, on port 0, against a given database.
//
//   import { startTestPostgres } from '../support/postgres.js';
//   import { startTestControlPlane, startTestControlPlanes, startChildControlPlane, unaryCall, errorInfoOf } from '../support/control-plane.js';
//
//   const pg = await startTestPostgres();
//   const cp = await startTestControlPlane(await pg.newDatabase());     // in this process
//   cp.target                      // "127.0.0.1:PORT" (gRPC), cp.httpPort for /metrics, /healthz
//   cp.clients.rules / .nodes / .counters / .explain / .agent / .lists   // @grpc/grpc-js clients (proto/gen)
//   const res = await unaryCall(cp.clients.rules, 'createRule', { rule: { cidr: '203.0.113.0/24', action: 1 } });
//   await cp.stop();               // graceful; also closes the clients
//
//   const [a, b] = await startTestControlPlanes(url, 2);                 // two processes' worth, one database
//   const child = await startChildControlPlane(url, { FLEETWALL_PING_INTERVAL: '1s' });  // a separate OS process (logs at info)
//   await child.stop();            // SIGTERM, waits for exit; child.kill() is SIGKILL
//   startChildControlPlane(url, {}, { nodeArgs: ['--cpu-prof'] })      // extra node flags (profiling)
//   connectClients(target, { ca, token })                               // TLS (trusting ca) and an API token
//   (security tests: test/support/tls-control-plane.ts starts control planes with TLS)
//
// Overrides: `startTestControlPlane(url, { pingIntervalMs: 200 })` takes any
// Config field (control-plane/src/config.ts); the child variant takes
// FLEETWALL_* environment variables. Logs go nowhere unless
// FLEETWALL_TEST_LOG_LEVEL is set (e.g. debug), or a test captures them:
//
//   const logs = captureLogs();                                        // every line, parsed
//   const cp = await startTestControlPlane(url, {}, { logger: logs.logger });
//   logs.lines.filter((l) => l.msg === 'import committed')
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { credentials, InterceptingCall, type Interceptor, Metadata, type ServiceError } from '@grpc/grpc-js';
import pino, { type Logger } from 'pino';
import { AgentServiceClient } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { CounterServiceClient } from '../../proto/gen/fleetwall/v1/counter_service.js';
import { ExplainServiceClient } from '../../proto/gen/fleetwall/v1/explain_service.js';
import { ListServiceClient } from '../../proto/gen/fleetwall/v1/list_service.js';
import { NodeServiceClient } from '../../proto/gen/fleetwall/v1/node_service.js';
import { RuleServiceClient } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { AuditServiceClient } from '../../proto/gen/fleetwall/v1/audit_service.js';
import { TokenServiceClient } from '../../proto/gen/fleetwall/v1/token_service.js';
import { EnrollmentServiceClient } from '../../proto/gen/fleetwall/v1/enrollment_service.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Config, configWith } from '../../control-plane/src/config.js';
import { type ControlPlane, startControlPlane } from '../../control-plane/src/control-plane.js';
import { errorInfoOf } from '../../control-plane/src/errors/status-details.js';

export { errorInfoOf };

export interface TestClients {
  readonly rules: RuleServiceClient;
  readonly nodes: NodeServiceClient;
  readonly counters: CounterServiceClient;
  readonly explain: ExplainServiceClient;
  readonly agent: AgentServiceClient;
  readonly tokens: TokenServiceClient;
  readonly audit: AuditServiceClient;
  readonly enrollment: EnrollmentServiceClient;
  readonly lists: ListServiceClient;
  close(): void;
}

/** How test clients connect: TLS trusting `ca` (plaintext without), an API token on every call. */
export interface TestClientOptions {
  readonly ca?: Buffer;
  readonly token?: string;
}

/** A client interceptor that adds `authorization: Bearer <token>` to every call (also on plaintext channels). */
export function bearerInterceptor(token: string): Interceptor {
  return (options, next) =>
    new InterceptingCall(next(options), {
      start(metadata, listener, start) {
        metadata.set('authorization', `Bearer ${token}`);
        start(metadata, listener);
      },
    });
}

export interface TestControlPlane {
  readonly id: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  /** host:port for gRPC clients. */
  readonly target: string;
  readonly clients: TestClients;
  readonly storeId: string;
  readonly cp: ControlPlane;
  /** With TLS on: the CA bundle clients trust and the first admin token (from its data directory). */
  readonly tls?: { readonly ca: Buffer; readonly adminToken: string | undefined };
  stop(): Promise<void>;
}

const CLIENT_OPTIONS = { 'grpc.max_receive_message_length': 256 * 1024 * 1024, 'grpc.max_send_message_length': 256 * 1024 * 1024 };

export function connectClients(target: string, o: TestClientOptions = {}): TestClients {
  const c = o.ca ? credentials.createSsl(o.ca) : credentials.createInsecure();
  const opts = o.token ? { ...CLIENT_OPTIONS, interceptors: [bearerInterceptor(o.token)] } : CLIENT_OPTIONS;
  const rules = new RuleServiceClient(target, c, opts);
  const nodes = new NodeServiceClient(target, c, opts);
  const counters = new CounterServiceClient(target, c, opts);
  const explain = new ExplainServiceClient(target, c, opts);
  const agent = new AgentServiceClient(target, c, opts);
  const tokens = new TokenServiceClient(target, c, opts);
  const audit = new AuditServiceClient(target, c, opts);
  const enrollment = new EnrollmentServiceClient(target, c, opts);
  const lists = new ListServiceClient(target, c, opts);
  return {
    rules,
    nodes,
    counters,
    explain,
    agent,
    tokens,
    audit,
    enrollment,
    lists,
    close() {
      for (const x of [rules, nodes, counters, explain, agent, tokens, audit, enrollment, lists]) x.close();
    },
  };
}

/** The test defaults: loopback, port 0, quiet, short intervals. */
export function testConfig(databaseUrl: string, overrides: Partial<Config> = {}): Config {
  return configWith({
    databaseUrl,
    grpcHost: '127.0.0.1',
    grpcPort: 0,
    httpHost: '127.0.0.1',
    httpPort: 0,
    logLevel: 'silent',
    nodeFlushIntervalMs: 200,
    counterFlushIntervalMs: 200,
    dbPoolSize: 5,
    ...overrides,
  });
}

export interface CapturedLogs {
  readonly logger: Logger;
  /** Every line logged so far (pino JSON, parsed). */
  readonly lines: Record<string, unknown>[];
}

/** A debug-level logger that keeps every line in memory. */
export function captureLogs(): CapturedLogs {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) {
        if (l.trim() === '') continue;
        try {
          lines.push(JSON.parse(l) as Record<string, unknown>);
        } catch {
          // not JSON
        }
      }
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

export async function startTestControlPlane(
  databaseUrl: string,
  overrides: Partial<Config> = {},
  opts: { readonly logger?: Logger } = {},
): Promise<TestControlPlane> {
  const config = testConfig(databaseUrl, overrides);
  const logger = opts.logger ?? pino({ level: process.env.FLEETWALL_TEST_LOG_LEVEL ?? 'silent' });
  const cp = await startControlPlane(config, logger);
  const target = `127.0.0.1:${cp.grpcPort}`;
  // With TLS (--tls, a non-loopback bind): the clients trust its own CA and send the first admin token.
  let tls: TestControlPlane['tls'];
  if (cp.security === 'tls') {
    const caFile = config.tlsCaFile ?? join(config.dataDir, 'pki/ca.crt');
    const tokenFile = join(config.dataDir, 'admin.token');
    tls = {
      ca: readFileSync(caFile),
      adminToken: existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : undefined,
    };
  }
  const clients = connectClients(target, tls ? { ca: tls.ca, ...(tls.adminToken ? { token: tls.adminToken } : {}) } : {});
  let stopped: Promise<void> | undefined;
  return {
    id: cp.id,
    grpcPort: cp.grpcPort,
    httpPort: cp.httpPort,
    target,
    clients,
    storeId: cp.storeId,
    cp,
    ...(tls ? { tls } : {}),
    stop() {
      stopped ??= (async () => {
        clients.close();
        await cp.stop();
      })();
      return stopped;
    },
  };
}

export async function startTestControlPlanes(
  databaseUrl: string,
  count: number,
  overrides: Partial<Config> = {},
): Promise<TestControlPlane[]> {
  const out: TestControlPlane[] = [];
  // One at a time: the first applies the migrations (the others would wait on its lock anyway).
  for (let i = 0; i < count; i++)
    out.push(await startTestControlPlane(databaseUrl, { controlPlaneId: `test-cp-${i + 1}-${process.pid}`, ...overrides }));
  return out;
}

export interface ChildControlPlane {
  readonly pid: number;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly target: string;
  readonly process: ChildProcess;
  /** SIGTERM and wait for a clean exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL (no cleanup) and wait. */
  kill(): Promise<void>;
}

const MAIN = fileURLToPath(new URL('../../control-plane/src/main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Starts `control-plane/src/main.ts` in its own process; resolves once it serves. */
export async function startChildControlPlane(
  databaseUrl: string | undefined,
  env: Record<string, string> = {},
  opts: {
    readonly nodeArgs?: readonly string[];
    /** What node runs (default: --import tsx control-plane/src/main.ts), e.g. ['bin/fleetwall.mjs', 'control-plane']. */
    readonly command?: readonly string[];
    /** A command prefix (e.g. a sandbox: test/support/systemd-unit.ts). */
    readonly wrap?: readonly string[];
    /** Unset these of the environment this process passes on. */
    readonly unsetEnv?: readonly string[];
  } = {},
): Promise<ChildControlPlane> {
  const childEnv: Record<string, string | undefined> = {
    ...process.env,
    FLEETWALL_GRPC_HOST: '127.0.0.1',
    FLEETWALL_GRPC_PORT: '0',
    FLEETWALL_HTTP_HOST: '127.0.0.1',
    FLEETWALL_HTTP_PORT: '0',
    ...env,
    // The launcher reads the bound ports from the "control plane started" info line.
    FLEETWALL_LOG_LEVEL: 'info',
  };
  if (databaseUrl) childEnv.DATABASE_URL = databaseUrl;
  else delete childEnv.DATABASE_URL;
  for (const k of opts.unsetEnv ?? []) delete childEnv[k];
  const argv = [process.execPath, ...(opts.nodeArgs ?? []), ...(opts.command ?? ['--import', 'tsx', MAIN])];
  const wrapped = [...(opts.wrap ?? []), ...argv];
  const child = spawn(wrapped[0]!, wrapped.slice(1), {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const lines = createInterface({ input: child.stdout! });
  let stdout = '';
  lines.on('line', (line) => {
    stdout = `${stdout}${line}\n`.slice(-4000);
  });
  const started = await new Promise<{ grpcPort: number; httpPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child control plane did not start in 60s; stderr: ${stderr}`)), 60_000);
    lines.on('line', (line) => {
      try {
        const j = JSON.parse(line) as { msg?: string; grpcPort?: number; httpPort?: number };
        if (j.msg === 'control plane started') {
          clearTimeout(timer);
          resolve({ grpcPort: j.grpcPort!, httpPort: j.httpPort! });
        }
      } catch {
        // not a log line
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`child control plane exited with ${code} before serving; stderr: ${stderr}; stdout: ${stdout}`));
    });
  });
  lines.on('line', () => undefined);
  return {
    pid: child.pid!,
    ...started,
    target: `127.0.0.1:${started.grpcPort}`,
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

type UnaryMethod<Req, Res> = (req: Req, md: Metadata, opts: object, cb: (err: ServiceError | null, res: Res) => void) => unknown;

/** Calls a unary method; rejects with the ServiceError. `actor` sets x-fleetwall-actor. */
export function unaryCall<C extends object, K extends keyof C>(
  client: C,
  method: K,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  req: C[K] extends UnaryMethod<infer Req, any> ? Req : never,
  actor?: string,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
): Promise<C[K] extends UnaryMethod<any, infer Res> ? Res : never> {
  const md = new Metadata();
  if (actor) md.set('x-fleetwall-actor', actor);
  return new Promise((resolve, reject) => {
    (client[method] as unknown as UnaryMethod<unknown, never>).call(client, req, md, { deadline: Date.now() + 60_000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** Awaits a rejected gRPC call and returns its error (fails if it succeeded). */
export async function callError(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as ServiceError;
  }
  throw new Error('expected the call to fail, but it succeeded');
}
