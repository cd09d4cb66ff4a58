// A small router for the control plane's HTTP server. Routes are added with
// `router.add(method, '/v1/rules/:id', handler)`; `:name` segments arrive in
// `params`. Handlers may throw FleetwallError: it becomes the HTTP status of
// its catalogue code with a JSON body {code, message, reason, metadata}.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { classifyError } from '../errors/to-grpc-status.js';
import { CATALOGUE } from '../errors/catalogue.js';

export type HttpHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  params: Readonly<Record<string, string>>,
  url: URL,
) => Promise<void> | void;

interface Route {
  readonly method: string;
  readonly pattern: string;
  readonly parts: readonly string[];
  readonly handler: HttpHandler;
}

/** gRPC code -> HTTP status (google.rpc.Code mapping). */
const HTTP_STATUS: Record<number, number> = {
  0: 200,
  1: 499,
  2: 500,
  3: 400,
  4: 504,
  5: 404,
  6: 409,
  7: 403,
  8: 429,
  9: 400,
  10: 409,
  11: 400,
  12: 501,
  13: 500,
  14: 503,
  15: 500,
  16: 401,
};

export function httpStatusOf(grpcCode: number): number {
  return HTTP_STATUS[grpcCode] ?? 500;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Reads a JSON request body of at most `maxBytes`. */
export async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > maxBytes)
      throw new FleetwallError('MESSAGE_TOO_LARGE', `the request body is over ${maxBytes} bytes`, { max_bytes: String(maxBytes) });
    parts.push(c as Buffer);
  }
  const text = Buffer.concat(parts).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FleetwallError('INVALID_QUERY', `the request body is not JSON: ${(e as Error).message}`);
  }
}

export class HttpRouter {
  private readonly routes: Route[] = [];

  constructor(private readonly logger: Logger) {}

  add(method: string, pattern: string, handler: HttpHandler): this {
    this.routes.push({ method: method.toUpperCase(), pattern, parts: pattern.split('/').filter(Boolean), handler });
    return this;
  }

  list(): readonly { method: string; pattern: string }[] {
    return this.routes.map((r) => ({ method: r.method, pattern: r.pattern }));
  }

  private match(method: string, path: string): { route: Route; params: Record<string, string> } | 'method' | undefined {
    const segs = path.split('/').filter(Boolean);
    let methodMismatch = false;
    for (const r of this.routes) {
      if (r.parts.length !== segs.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < segs.length; i++) {
        const p = r.parts[i]!;
        if (p.startsWith(':')) params[p.slice(1)] = decodeURIComponent(segs[i]!);
        else if (p !== segs[i]) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      if (r.method !== method && !(r.method === 'GET' && method === 'HEAD')) {
        methodMismatch = true;
        continue;
      }
      return { route: r, params };
    }
    return methodMismatch ? 'method' : undefined;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const m = this.match(req.method ?? 'GET', url.pathname);
    if (m === undefined) return sendJson(res, 404, { code: 5, message: `no route for ${url.pathname}`, reason: 'NOT_FOUND' });
    if (m === 'method')
      return sendJson(res, 405, { code: 12, message: `${req.method} is not allowed on ${url.pathname}`, reason: 'METHOD_NOT_ALLOWED' });
    try {
      await m.route.handler(req, res, m.params, url);
    } catch (err) {
      let fe = classifyError(err);
      if (!fe) {
        this.logger.error({ err, path: url.pathname }, 'internal error');
        fe = new FleetwallError('INTERNAL');
      }
      const code = CATALOGUE[fe.reason].code;
      if (!res.headersSent) sendJson(res, httpStatusOf(code), { code, message: fe.message, reason: fe.reason, metadata: fe.metadata });
      else res.destroy();
    }
  }
}
