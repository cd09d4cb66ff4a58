// A TCP listener inside one namespace of a NetnsPair that forwards every
// connection to a Unix socket (files cross network namespaces): with
// UdsProxy (agent-process.ts) in front of a control plane on 127.0.0.1, an
// agent in namespace b reaches that control plane at an IP address of
// namespace a, over the veth pair, through its own XDP and TC programs -
// so a rule can cover the control plane's address.
//
//   const link = await UdsProxy.start(cp.target);                 // unix socket -> 127.0.0.1:port
//   const fwd = await NetnsForwarder.start(bed, 'a', bed.a.v4, link.path);
//   fwd.target                                                    // "192.0.2.1:PORT" for --control-plane
//   await fwd.stop();
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { NetnsPair, Side } from './netns.js';

const SCRIPT = `
const net = require('node:net');
const [host, path] = process.argv.slice(-2);
const server = net.createServer((inbound) => {
  const out = net.connect(path);
  const drop = () => { inbound.destroy(); out.destroy(); };
  inbound.on('error', drop).on('close', drop);
  out.on('error', drop).on('close', drop);
  inbound.pipe(out);
  out.pipe(inbound);
});
server.listen(0, host, () => process.stdout.write(JSON.stringify({ port: server.address().port }) + '\\n'));
`;

export class NetnsForwarder {
  private constructor(
    private readonly child: ChildProcess,
    readonly host: string,
    readonly port: number,
  ) {}

  static async start(bed: NetnsPair, side: Side, host: string, unixPath: string): Promise<NetnsForwarder> {
    const child = bed.spawn(side, [process.execPath, '-e', SCRIPT, host, unixPath]);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`forwarder did not listen within 10 s: ${stderr}`)), 10_000);
      createInterface({ input: child.stdout! }).once('line', (line) => {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { port: number }).port);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`forwarder exited with ${code}: ${stderr}`));
      });
    });
    return new NetnsForwarder(child, host, port);
  }

  /** host:port for a gRPC client in the other namespace. */
  get target(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGKILL');
    await exited;
  }
}
