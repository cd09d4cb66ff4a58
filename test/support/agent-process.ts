// A real agent process for end-to-end tests: `node --import tsx
// node-agent/src/main.ts` inside the host namespace (b) of a NetnsPair, with
// its own pin dir under /sys/fs/bpf, its own state dir, HTTP on a Unix
// socket, and a ready file. kill9() is a real SIGKILL.
//
//   const cpLink = await UdsProxy.start(controlPlaneTcpAddress);
//   const agent = await AgentProcess.start({ bed, controlPlane: cpLink.address });
//   await agent.health();            // /healthz JSON
//   await agent.kill9(); await agent.restart();
//   cpLink.cut();                    // the control plane becomes unreachable
//   await agent.cleanup();           // kills it, removes pins and files
//   AgentProcess.start({ ..., enroll: { joinToken, caCertHash } })   // TLS: enrolls on its
//                                    // first start (identity in <dir>/identity), keeps it across restarts
//   AgentProcess.start({ ..., wrap: (a) => [...] })   // runs under a command prefix (a sandbox)
//
// The agent reaches the control plane through a Unix socket (UdsProxy):
// sockets in the filesystem cross network namespaces, so the control plane
// can run in the test's namespace on 127.0.0.1 and nothing else is opened.

import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { type Server, type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NetnsPair } from './netns.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN = join(ROOT, 'node-agent/src/main.ts');

/** Forwards a Unix socket to a TCP address; cut() makes the target unreachable. */
export class UdsProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private target: { host: string; port: number };
  readonly path: string;

  private constructor(path: string, target: string) {
    this.path = path;
    this.target = UdsProxy.parse(target);
  }

  private static parse(addr: string): { host: string; port: number } {
    const i = addr.lastIndexOf(':');
    return { host: addr.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1', port: Number(addr.slice(i + 1)) };
  }

  static async start(target: string): Promise<UdsProxy> {
    const dir = join(tmpdir(), `fwuds-${process.pid}-${randomBytes(4).toString('hex')}`);
    mkdirSync(dir, { recursive: true });
    const p = new UdsProxy(join(dir, 'cp.sock'), target);
    await p.restore();
    return p;
  }

  /** The gRPC target for the agent. */
  get address(): string {
    return `unix:${this.path}`;
  }

  /** Points new connections at another control plane (existing ones are cut). */
  retarget(target: string): void {
    this.target = UdsProxy.parse(target);
    this.dropConnections();
  }

  private dropConnections(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  /** Drops every connection and refuses new ones (ECONNREFUSED). */
  async cut(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    this.dropConnections();
    if (s) await new Promise<void>((r) => s.close(() => r()));
    rmSync(this.path, { force: true });
  }

  async restore(): Promise<void> {
    if (this.server) return;
    rmSync(this.path, { force: true });
    const server = createServer((inbound) => {
      const out = connect(this.target.port, this.target.host);
      this.sockets.add(inbound);
      this.sockets.add(out);
      const drop = (): void => {
        inbound.destroy();
        out.destroy();
        this.sockets.delete(inbound);
        this.sockets.delete(out);
      };
      inbound.on('error', drop).on('close', drop);
      out.on('error', drop).on('close', drop);
      inbound.pipe(out);
      out.pipe(inbound);
    });
    await new Promise<void>((r, j) => server.once('error', j).listen(this.path, () => r()));
    this.server = server;
  }

  async close(): Promise<void> {
    await this.cut();
    rmSync(dirname(this.path), { recursive: true, force: true });
  }
}

export interface AgentProcessOptions {
  readonly bed: NetnsPair;
  /** gRPC target as the agent sees it (e.g. UdsProxy.address). */
  readonly controlPlane: string;
  readonly nodeName?: string;
  /** k=v,k2=v2 */
  readonly labels?: string;
  readonly interfaces?: readonly string[];
  readonly pinDir?: string;
  readonly counterInterval?: string;
  /** Enroll with this join token and CA pin (TLS to the control plane; the identity stays in the agent's dir). */
  readonly enroll?: { readonly joinToken: string; readonly caCertHash: string };
  /** More flags. */
  readonly args?: readonly string[];
  /** Flags for node itself (before the script), e.g. --max-semi-space-size=4. */
  readonly nodeArgs?: readonly string[];
  /** A command prefix the agent runs under (e.g. a sandbox: test/support/systemd-unit.ts), given the agent's dirs. */
  readonly wrap?: (a: { readonly dir: string; readonly pinDir: string; readonly opts: AgentProcessOptions }) => readonly string[];
}

export interface AgentHealthJson {
  nodeName: string;
  tables: Array<{ table: string; entries: number; capacity: number; size: number; kernelBytes: number }>;
  kernelMemory: {
    bytes: number;
    perCpuBytes: number;
    counterSlots: number;
    journalRules: number;
    maps: Array<{ name: string; bytes: number }>;
  };
  syncState: string;
  connected: boolean;
  appliedRevision: string;
  desiredRevision: string;
  storeId: string;
  rulesDesired: number;
  rulesInKernel: number;
  lastError: string;
  lastSyncMode: string;
  snapshots: number;
  resumes: number;
  nacks: number;
  acks: number;
  expiredLocally: number;
  pid: number;
  [k: string]: unknown;
}

export class AgentProcess {
  readonly dir: string;
  readonly pinDir: string;
  readonly nodeName: string;
  private child: ChildProcess | undefined;
  private logText = '';
  private exitInfo: string | undefined;
  /** Processes started so far (restarts included). */
  starts = 0;

  private constructor(readonly opts: AgentProcessOptions) {
    const id = `${process.pid}-${randomBytes(4).toString('hex')}`;
    this.dir = join(tmpdir(), `fwagent-${id}`);
    this.pinDir = opts.pinDir ?? `/sys/fs/bpf/fleetwall-test-${id}`;
    this.nodeName = opts.nodeName ?? `node-${id}`;
    mkdirSync(this.dir, { recursive: true });
  }

  static async start(opts: AgentProcessOptions): Promise<AgentProcess> {
    const a = new AgentProcess(opts);
    try {
      await a.launch();
    } catch (e) {
      await a.cleanup();
      throw e;
    }
    return a;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get httpSocket(): string {
    return join(this.dir, 'http.sock');
  }

  /** Everything the agent printed (pino JSON lines). */
  get log(): string {
    return this.logText;
  }

  /** Log records (parsed pino lines) whose msg matches. */
  records(msg: RegExp): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of this.logText.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const r = JSON.parse(line) as Record<string, unknown>;
        if (typeof r.msg === 'string' && msg.test(r.msg)) out.push(r);
      } catch {
        /* partial line */
      }
    }
    return out;
  }

  private argv(): string[] {
    const o = this.opts;
    return [
      process.execPath,
      ...(o.nodeArgs ?? []),
      '--import',
      'tsx',
      MAIN,
      '--control-plane',
      o.controlPlane,
      '--node-name',
      this.nodeName,
      '--labels',
      o.labels ?? '',
      '--interfaces',
      (o.interfaces ?? [o.bed.b.ifname]).join(','),
      '--pin-path',
      this.pinDir,
      '--http-addr',
      `unix:${this.httpSocket}`,
      '--ready-file',
      join(this.dir, 'ready.json'),
      '--counter-interval',
      o.counterInterval ?? '200ms',
      '--reconnect-min',
      '50ms',
      '--reconnect-max',
      '1s',
      '--log-level',
      process.env.FLEETWALL_AGENT_TEST_LOG ?? 'info',
      ...(o.enroll ? ['--join-token', o.enroll.joinToken, '--ca-cert-hash', o.enroll.caCertHash, '--identity-dir', this.identityDir] : []),
      ...(o.args ?? []),
    ];
  }

  /** Where the agent keeps its key and certificate (--identity-dir). */
  get identityDir(): string {
    return join(this.dir, 'identity');
  }

  private async launch(): Promise<void> {
    const ready = join(this.dir, 'ready.json');
    rmSync(ready, { force: true });
    this.exitInfo = undefined;
    const child = this.opts.bed.spawn('b', [...(this.opts.wrap?.(this) ?? []), ...this.argv()], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.starts++;
    const n = this.starts;
    this.logText += `--- start ${n} ---\n`;
    child.stdout!.on('data', (d: Buffer) => (this.logText += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (this.logText += d.toString()));
    child.once('exit', (code, sig) => (this.exitInfo = `exit ${code ?? sig}`));
    const deadline = Date.now() + 60_000;
    while (!existsSync(ready)) {
      if (this.exitInfo) throw new Error(`agent exited before ready (${this.exitInfo}):\n${this.logText.slice(-4000)}`);
      if (Date.now() > deadline) throw new Error(`agent not ready within 60 s:\n${this.logText.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Starts the agent again with the same pins, state and options. */
  async restart(): Promise<void> {
    if (this.alive) throw new Error('agent still running');
    await this.launch();
  }

  /** SIGKILL, then wait until the process is gone. */
  async kill9(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** SIGTERM (graceful stop), then wait. */
  async stop(): Promise<void> {
    await this.signal('SIGTERM', 15_000);
  }

  private async signal(sig: NodeJS.Signals, graceMs = 10_000): Promise<void> {
    const c = this.child;
    if (!c || !this.alive) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill(sig);
    const timer = setTimeout(() => c.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  async get(path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolveP, reject) => {
      const req = request({ socketPath: this.httpSocket, path, method: 'GET', timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolveP({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
      req.end();
    });
  }

  async health(): Promise<AgentHealthJson> {
    const r = await this.get('/healthz');
    return JSON.parse(r.body) as AgentHealthJson;
  }

  async metrics(): Promise<string> {
    return (await this.get('/metrics')).body;
  }

  /** Polls /healthz until `cond` holds. */
  async waitHealth(what: string, cond: (h: AgentHealthJson) => boolean, timeoutMs = 30_000): Promise<AgentHealthJson> {
    const deadline = Date.now() + timeoutMs;
    let last: AgentHealthJson | undefined;
    for (;;) {
      if (!this.alive) throw new Error(`agent died while waiting for ${what} (${this.exitInfo}):\n${this.logText.slice(-4000)}`);
      try {
        last = await this.health();
        if (cond(last)) return last;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}; last health: ${JSON.stringify(last)}\n${this.logText.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** `fleetwall agent uninstall` for this agent's pins (in its namespace). */
  async uninstall(): Promise<{ code: number; output: string }> {
    const child = this.opts.bed.spawn('b', [process.execPath, '--import', 'tsx', MAIN, 'uninstall', '--pin-path', this.pinDir], {
      cwd: ROOT,
    });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)));
    return { code, output };
  }

  /** Kills the agent and removes its pins and files. Safe to call twice. */
  async cleanup(): Promise<void> {
    await this.kill9();
    if (existsSync(this.pinDir)) {
      try {
        rmSync(this.pinDir, { recursive: true, force: true });
      } catch {
        /* bpffs: best effort */
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Last lines of the log, for assertion messages. */
  tail(n = 40): string {
    return this.logText.split('\n').slice(-n).join('\n');
  }

  readyInfo(): { pid: number; httpPort: number; appliedRevision: string } {
    return JSON.parse(readFileSync(join(this.dir, 'ready.json'), 'utf8')) as { pid: number; httpPort: number; appliedRevision: string };
  }
}
