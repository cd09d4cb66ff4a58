// A Unix socket that forwards to the control plane's TCP port, so an agent
// inside a network namespace reaches a control plane listening on this
// namespace's loopback (filesystem sockets cross network namespaces).
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export class UnixLink {
  private constructor(
    private readonly server: Server,
    private readonly sockets: Set<Socket>,
    private readonly dir: string,
    readonly path: string,
  ) {}

  static async open(port: number): Promise<UnixLink> {
    const dir = mkdtempSync(join(tmpdir(), 'fleetwall-demo-'));
    const path = join(dir, 'control-plane.sock');
    const sockets = new Set<Socket>();
    const server = createServer((inbound) => {
      const outbound = connect(port, '127.0.0.1');
      for (const s of [inbound, outbound]) {
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
        s.on('error', () => {
          inbound.destroy();
          outbound.destroy();
        });
      }
      inbound.pipe(outbound).pipe(inbound);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return new UnixLink(server, sockets, dir, path);
  }

  /** The gRPC target for the agent. */
  get target(): string {
    return `unix:${this.path}`;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
