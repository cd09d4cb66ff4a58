// The control plane's HTTP server (node:http): GET /metrics (Prometheus),
// GET /healthz, and whatever routes json-api.ts registers.
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import type { HttpRouter } from './router.js';

export interface HttpServerHandle {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpServer(host: string, port: number, router: HttpRouter, logger: Logger): Promise<HttpServerHandle> {
  const server: Server = createServer((req, res) => {
    router.handle(req, res).catch((err) => {
      logger.error({ err }, 'http handler failed');
      res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  logger.info({ port: bound }, 'HTTP listening');
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
