// Shared end-to-end test bed: two network namespaces joined by a veth pair.
//
//   import { withNetnsPair } from '../support/netns.js';
//
//   await withNetnsPair(async (bed) => {
//     // bed.a: the peer that sends traffic; bed.b: the host under test
//     // (attach fleetwall to bed.b.ifname from a process inside bed.b.ns).
//     const r = await bed.exec('a', ['ping', '-c', '1', '-I', bed.a.v4Extra[0]!, bed.b.v4]);
//     const child = bed.spawn('b', [process.execPath, '--import', 'tsx', 'my-agent.ts']);
//   });
//
// Layout (both namespaces are new, named with this pid and a random suffix):
//
//   ns a "fwt<pid>-<hex>-a"                       ns b "fwt<pid>-<hex>-b"
//   a.ifname (veth) ----------------------------- b.ifname (veth)
//   a.v4 192.0.2.1/24                             b.v4 192.0.2.254/24
//   a.v4Extra 192.0.2.2 .. 192.0.2.5              b.v6 2001:db8:f00::fe/64
//   a.v6 2001:db8:f00::1/64, a.v6Extra ::2 .. ::5
//
// Addresses are from TEST-NET-1 and the documentation prefix and only exist
// inside the two namespaces, so parallel beds never collide. Neighbour
// entries are static on both sides: no ARP or ND on the wire, so a counter
// sees exactly the packets a test sends. IPv6 addresses skip DAD.
//
// API:
//   createNetnsPair({ tag? })   -> NetnsPair (remember to destroy())
//   withNetnsPair(fn, { tag? }) -> runs fn(bed), always destroys
//   bed.exec(side, argv)        -> { code, stdout, stderr } (`ip netns exec`)
//   bed.execSync(side, argv)
//   bed.spawn(side, argv, opts) -> ChildProcess inside the namespace (via
//                                  nsenter --net, so /sys/fs/bpf stays visible
//                                  to the child; killed at teardown)
//   bed.nsenter(side)           -> argv prefix ['nsenter', '--net=...', '--']
//   bed.destroy()               -> kills the children it spawned, deletes both
//                                  namespaces (and so the veth); idempotent
//   sweepStaleNetns()           -> deletes beds left by crashed runs (their pid is dead)
//
// Teardown is guaranteed by try/finally in withNetnsPair, plus process
// 'exit', SIGINT and SIGTERM handlers for beds still alive.

import { type ChildProcess, type SpawnOptions, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export type Side = 'a' | 'b';

export interface NetnsSide {
  readonly ns: string;
  readonly ifname: string;
  readonly ifindex: number;
  readonly mac: string;
  readonly v4: string;
  readonly v6: string;
  /** More addresses on the same interface (sources inside/outside a rule). */
  readonly v4Extra: readonly string[];
  readonly v6Extra: readonly string[];
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

const NS_RE = /^fwt(\d+)-([0-9a-f]+)-[ab]$/;
const live = new Set<NetnsPair>();
let handlersInstalled = false;

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const bed of live) bed.destroy();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const bed of live) bed.destroy();
      process.kill(process.pid, sig);
    });
  }
}

export class NetnsPair {
  readonly id: string;
  readonly a: NetnsSide;
  readonly b: NetnsSide;
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;

  private constructor(id: string, a: NetnsSide, b: NetnsSide) {
    this.id = id;
    this.a = a;
    this.b = b;
  }

  static create(tag = ''): NetnsPair {
    installHandlers();
    sweepStaleNetns();
    const hex = randomBytes(3).toString('hex');
    const id = `fwt${process.pid}-${hex}`;
    const nsA = `${id}-a`;
    const nsB = `${id}-b`;
    const ifA = `fw${hex}a`;
    const ifB = `fw${hex}b`;
    const partial = { ns: [] as string[] };
    try {
      ip(['netns', 'add', nsA]);
      partial.ns.push(nsA);
      ip(['netns', 'add', nsB]);
      partial.ns.push(nsB);
      ip(['-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
      const a4 = ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.5'];
      const a6 = ['2001:db8:f00::1', '2001:db8:f00::2', '2001:db8:f00::3', '2001:db8:f00::4', '2001:db8:f00::5'];
      const b4 = '192.0.2.254';
      const b6 = '2001:db8:f00::fe';
      for (const [ns, ifn] of [
        [nsA, ifA],
        [nsB, ifB],
      ] as const) {
        // No router solicitations or DAD probes from our addresses.
        execFileSync('ip', [
          'netns',
          'exec',
          ns,
          'sysctl',
          '-qw',
          `net.ipv6.conf.${ifn}.accept_ra=0`,
          `net.ipv6.conf.${ifn}.dad_transmits=0`,
          'net.ipv6.conf.all.accept_dad=0',
        ]);
        ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      }
      for (const addr of a4) ip(['-n', nsA, 'addr', 'add', `${addr}/24`, 'dev', ifA]);
      for (const addr of a6) ip(['-n', nsA, 'addr', 'add', `${addr}/64`, 'dev', ifA, 'nodad']);
      ip(['-n', nsB, 'addr', 'add', `${b4}/24`, 'dev', ifB]);
      ip(['-n', nsB, 'addr', 'add', `${b6}/64`, 'dev', ifB, 'nodad']);
      ip(['-n', nsA, 'link', 'set', ifA, 'up']);
      ip(['-n', nsB, 'link', 'set', ifB, 'up']);
      const linkOf = (ns: string, ifn: string) => {
        const j = JSON.parse(ip(['-j', '-n', ns, 'link', 'show', ifn])) as Array<{ ifindex: number; address: string }>;
        return j[0]!;
      };
      const la = linkOf(nsA, ifA);
      const lb = linkOf(nsB, ifB);
      // Static neighbours: the wire carries only what the tests send.
      for (const addr of [...a4, ...a6]) ip(['-n', nsB, 'neigh', 'replace', addr, 'lladdr', la.address, 'dev', ifB, 'nud', 'permanent']);
      for (const addr of [b4, b6]) ip(['-n', nsA, 'neigh', 'replace', addr, 'lladdr', lb.address, 'dev', ifA, 'nud', 'permanent']);
      const bed = new NetnsPair(
        tag ? `${id}:${tag}` : id,
        { ns: nsA, ifname: ifA, ifindex: la.ifindex, mac: la.address, v4: a4[0]!, v6: a6[0]!, v4Extra: a4.slice(1), v6Extra: a6.slice(1) },
        { ns: nsB, ifname: ifB, ifindex: lb.ifindex, mac: lb.address, v4: b4, v6: b6, v4Extra: [], v6Extra: [] },
      );
      live.add(bed);
      return bed;
    } catch (e) {
      for (const ns of partial.ns) deleteNs(ns);
      throw e;
    }
  }

  side(s: Side): NetnsSide {
    return s === 'a' ? this.a : this.b;
  }

  nsenter(s: Side): string[] {
    return ['nsenter', `--net=/run/netns/${this.side(s).ns}`, '--'];
  }

  exec(s: Side, argv: string[], timeoutMs = 30_000): Promise<ExecResult> {
    return new Promise((resolve) => {
      execFile('ip', ['netns', 'exec', this.side(s).ns, ...argv], { encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  execSync(s: Side, argv: string[]): ExecResult {
    try {
      const stdout = execFileSync('ip', ['netns', 'exec', this.side(s).ns, ...argv], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      return { code: 0, stdout, stderr: '' };
    } catch (e) {
      const err = e as { status?: number; stdout?: string; stderr?: string };
      return { code: err.status ?? 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
    }
  }

  /** Starts a process inside the namespace (network only: /sys/fs/bpf stays the host's). */
  spawn(s: Side, argv: string[], opts: SpawnOptions = {}): ChildProcess {
    const [cmd, ...args] = [...this.nsenter(s), ...argv];
    const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const c of this.children) {
      if (c.exitCode === null && c.pid) {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    deleteNs(this.a.ns);
    deleteNs(this.b.ns);
  }
}

function deleteNs(ns: string): void {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    /* already gone */
  }
}

export function createNetnsPair(opts: { tag?: string } = {}): NetnsPair {
  return NetnsPair.create(opts.tag);
}

export async function withNetnsPair<T>(fn: (bed: NetnsPair) => Promise<T> | T, opts: { tag?: string } = {}): Promise<T> {
  const bed = NetnsPair.create(opts.tag);
  try {
    return await fn(bed);
  } finally {
    bed.destroy();
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Deletes test-bed namespaces whose creating process is dead. Returns their names. */
export function sweepStaleNetns(): string[] {
  let names: string[] = [];
  try {
    names = ip(['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => NS_RE.test(n));
  } catch {
    return [];
  }
  const swept: string[] = [];
  for (const n of names) {
    const pid = Number(NS_RE.exec(n)![1]);
    if (pid !== process.pid && !pidAlive(pid)) {
      deleteNs(n);
      swept.push(n);
    }
  }
  return swept;
}
