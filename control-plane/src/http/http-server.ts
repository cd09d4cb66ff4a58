// The control plane's HTTP server (node:http, or node:https when TLS is on):
// GET /metrics (Prometheus), GET /healthz, and whatever routes json-api.ts
// registers. With TLS the certificate follows TlsFiles: a replaced file is
// served to new connections without a restart (setSecureContext).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Logger } from 'pino';
import type { TlsFiles } from '../pki/tls-files.js';
import { ACTOR_METADATA_KEY } from '../services/call-context.js';
import { normalizeNote, withAuditNote } from '../store/audit-note.js';
import type { HttpRouter } from './router.js';

export interface HttpServerHandle {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpServer(
  host: string,
  port: number,
  router: HttpRouter,
  logger: Logger,
  tls?: TlsFiles,
): Promise<HttpServerHandle> {
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const header = req.headers[ACTOR_METADATA_KEY];
    // The x-fleetwall-actor header is the audit note of what this request writes (store/audit-note.ts).
    withAuditNote(normalizeNote(Array.isArray(header) ? header[0] : header), () => router.handle(req, res)).catch((err) => {
      logger.error({ err }, 'http handler failed');
      res.destroy();
    });
  };
  let server: Server;
  if (tls) {
    const m = tls.current;
    const https = createHttpsServer({ key: m.key, cert: m.cert }, handle);
    tls.onChange((next) => https.setSecureContext({ key: next.key, cert: next.cert }));
    https.on('tlsClientError', (err) => logger.debug({ err: err.message }, 'TLS handshake failed'));
    server = https;
  } else server = createServer(handle);
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  logger.info({ port: bound, tls: tls !== undefined }, tls ? 'HTTPS listening' : 'HTTP listening');
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
