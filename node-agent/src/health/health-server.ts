// HTTP /healthz (JSON; 200 while the kernel enforces, whatever the control
// plane does — fail static is healthy) and /metrics (Prometheus text), on
// host:port or a Unix socket. A socket left at the path by an earlier run is
// replaced; anything else there (a file, a directory, a symlink) is left alone
// and the listen fails saying so.

import { lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AgentHealth } from './agent-health.js';
import type { AgentMetrics } from './metrics.js';

export function healthJson(h: AgentHealth): string {
  return JSON.stringify(h, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2);
}

/** Unlinks `path` if it is a socket (an earlier run's); throws if something else is there; nothing if nothing is. */
export function removeStaleSocket(path: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) {
    throw new Error(
      `${path} exists and is not a socket (${st.isSymbolicLink() ? 'a symlink' : st.isDirectory() ? 'a directory' : 'a file'}): ` +
        'refusing to remove it; choose another --http-addr unix:/path or remove it yourself',
    );
  }
  unlinkSync(path);
}

export class HealthServer {
  private server: Server | undefined;

  constructor(
    private readonly health: () => AgentHealth,
    private readonly metrics: AgentMetrics,
    /** False until the kernel enforces the pinned state (then /healthz says 200). */
    private readonly ready: () => boolean,
  ) {}

  /** Listens on host:port (port 0 = any); resolves with the bound port. */
  listen(addr: string): Promise<number> {
    const unixPath = addr.startsWith('unix:') ? addr.slice(5) : undefined;
    const i = addr.lastIndexOf(':');
    const host = addr.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(addr.slice(i + 1));
    const server = createServer((req, res) => {
      const url = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (url === '/healthz') {
        const ok = this.ready();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(`${healthJson(this.health())}\n`);
        return;
      }
      if (url === '/metrics') {
        this.metrics.registry
          .metrics()
          .then((text) => res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text))
          .catch((e: Error) => res.writeHead(500).end(e.message));
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try /healthz or /metrics\n');
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = (): void => {
        server.off('error', reject);
        const a = server.address();
        resolve(typeof a === 'object' && a !== null ? (a as AddressInfo).port : 0);
      };
      if (unixPath !== undefined) {
        try {
          removeStaleSocket(unixPath);
        } catch (e) {
          reject(e);
          return;
        }
        server.listen(unixPath, done);
      } else server.listen(port, host, done);
    });
  }

  close(): Promise<void> {
    const s = this.server;
    if (!s) return Promise.resolve();
    return new Promise((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}
