// The demo's network: two new namespaces joined by a veth pair. Nothing
// outside them is touched; deleting the namespaces removes everything.
//
//   client ns  fw<tag>-c    veth fw<tag>c0          server ns  fw<tag>-s    veth fw<tag>s0
//   192.0.2.10 (a good client), 192.0.2.66 (an attacker)  <-->  192.0.2.254 (the guarded host)
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export const DEMO_ADDRESSES = {
  good: '192.0.2.10',
  attacker: '192.0.2.66',
  server: '192.0.2.254',
} as const;

export class DemoNet {
  readonly client: string;
  readonly server: string;
  readonly clientIf: string;
  readonly serverIf: string;
  private readonly children = new Set<ChildProcess>();

  constructor(readonly tag: string) {
    this.client = `fw${tag}-c`;
    this.server = `fw${tag}-s`;
    this.clientIf = `fw${tag}c0`.slice(0, 15);
    this.serverIf = `fw${tag}s0`.slice(0, 15);
  }

  private ip(args: string[]): void {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  /** Creates both namespaces (replacing leftovers of an earlier run with the same tag). */
  create(): void {
    this.destroy();
    this.ip(['netns', 'add', this.client]);
    this.ip(['netns', 'add', this.server]);
    this.ip(['link', 'add', this.clientIf, 'netns', this.client, 'type', 'veth', 'peer', 'name', this.serverIf, 'netns', this.server]);
    const inNs = (ns: string, args: string[]) => this.ip(['-n', ns, ...args]);
    inNs(this.client, ['addr', 'add', `${DEMO_ADDRESSES.good}/24`, 'dev', this.clientIf]);
    inNs(this.client, ['addr', 'add', `${DEMO_ADDRESSES.attacker}/24`, 'dev', this.clientIf]);
    inNs(this.server, ['addr', 'add', `${DEMO_ADDRESSES.server}/24`, 'dev', this.serverIf]);
    for (const [ns, dev] of [
      [this.client, this.clientIf],
      [this.server, this.serverIf],
      [this.client, 'lo'],
      [this.server, 'lo'],
    ] as const) {
      inNs(ns, ['link', 'set', dev, 'up']);
    }
  }

  /** argv prefix that runs a command inside a namespace; keeps /sys/fs/bpf visible (unlike `ip netns exec`). */
  enter(ns: string): string[] {
    return ['nsenter', `--net=/run/netns/${ns}`, '--'];
  }

  /**
   * Runs argv in a namespace, in a process group of its own: a terminal's
   * Ctrl-C (a signal to the demo's whole group) does not reach it, the demo
   * stops it in its turn.
   */
  spawnIn(ns: string, argv: string[], opts: SpawnOptions = {}): ChildProcess {
    const [cmd, ...args] = [...this.enter(ns), ...argv];
    const child = spawn(cmd!, args, { stdio: 'ignore', ...opts, detached: true });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** SIGTERM, then SIGKILL if it has not exited within graceMs; resolves once it has exited. */
  async terminate(child: ChildProcess, graceMs: number): Promise<void> {
    const exited = new Promise<void>((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
    child.kill(graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** SIGKILL to everything it spawned still running; resolves once they have all exited. */
  async killAll(): Promise<void> {
    await Promise.all([...this.children].map((c) => this.terminate(c, 0)));
  }

  /** Kills what it spawned and deletes both namespaces (and with them the veth pair). Idempotent. */
  destroy(): void {
    for (const c of this.children) c.kill('SIGKILL');
    this.children.clear();
    for (const ns of [this.client, this.server]) {
      try {
        this.ip(['netns', 'del', ns]);
      } catch {
        // not there
      }
    }
  }
}
