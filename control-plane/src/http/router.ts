// A small router for the control plane's HTTP server. Routes are added with
// `router.add(method, '/v1/rules/:id', handler)`; `:name` segments arrive in
// `params`. Handlers may throw FleetwallError: it becomes the HTTP status of
// its catalogue entry with a JSON body {code, message, reason, metadata}.
// Every error the router itself answers (no route, wrong method, a body that
// is not a JSON object) is a catalogued FleetwallError too, and every route
// reads its body with readJsonObject, so a bad body gets the same reason on
// every route.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { classifyError } from '../errors/to-grpc-status.js';
import { CATALOGUE, type Reason } from '../errors/catalogue.js';

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
  /** Who may call it, when registered with one (else the access table's entry; auth/http-auth.ts). */
  readonly access: string | undefined;
}

/** Runs before a matched route's handler (authentication, authorization); throws a FleetwallError to refuse. */
export type HttpGuard = (req: IncomingMessage, route: { method: string; pattern: string; access: string | undefined }) => Promise<void>;

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

/** The HTTP status of a catalogue reason: its own, or its gRPC code's. */
export function httpStatusOf(reason: Reason): number {
  const e: { code: number; httpStatus?: number } = CATALOGUE[reason];
  return e.httpStatus ?? HTTP_STATUS[e.code] ?? 500;
}

/** The JSON error body: {code (gRPC), message, reason, metadata}. */
export function sendError(res: ServerResponse, fe: FleetwallError): void {
  const status = httpStatusOf(fe.reason);
  // RFC 6750: a 401 names the scheme the client should use.
  const headers = status === 401 ? { 'www-authenticate': 'Bearer realm="fleetwall"' } : undefined;
  sendJson(res, status, { code: fe.code, message: fe.message, reason: fe.reason, metadata: fe.metadata }, headers);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Reads a request body that must be a JSON object of at most `maxBytes`,
 * declared as application/json: UNSUPPORTED_MEDIA_TYPE (415) otherwise,
 * MESSAGE_TOO_LARGE, INVALID_JSON for anything but an object. An empty body
 * is {}.
 */
export async function readJsonObject(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new FleetwallError(
      'UNSUPPORTED_MEDIA_TYPE',
      type === ''
        ? 'missing Content-Type: send the body as JSON with the header Content-Type: application/json'
        : `Content-Type "${type}" is not supported: send the body as JSON with Content-Type: application/json`,
      { content_type: type },
    );
  }
  const body = await readJson(req, maxBytes);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new FleetwallError(
      'INVALID_JSON',
      `the request body must be a JSON object ({...}), got ${Array.isArray(body) ? 'an array' : body === null ? 'null' : `a ${typeof body}`}`,
    );
  }
  return body as Record<string, unknown>;
}

async function readJson(req: IncomingMessage, maxBytes: number): Promise<unknown> {
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
    throw new FleetwallError('INVALID_JSON', `the request body is not JSON (${(e as Error).message}): send a JSON object`);
  }
}

export class HttpRouter {
  private readonly routes: Route[] = [];
  private guard: HttpGuard | undefined;

  constructor(private readonly logger: Logger) {}

  add(method: string, pattern: string, handler: HttpHandler, access?: string): this {
    this.routes.push({ method: method.toUpperCase(), pattern, parts: pattern.split('/').filter(Boolean), handler, access });
    return this;
  }

  /** The guard every matched route passes before its handler (control-plane.ts installs auth/http-auth.ts). */
  setGuard(guard: HttpGuard): this {
    this.guard = guard;
    return this;
  }

  list(): readonly { method: string; pattern: string; access: string | undefined }[] {
    return this.routes.map((r) => ({ method: r.method, pattern: r.pattern, access: r.access }));
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
    if (m === undefined)
      return sendError(res, new FleetwallError('ROUTE_NOT_FOUND', `no route for ${url.pathname}`, { path: url.pathname }));
    if (m === 'method') {
      return sendError(
        res,
        new FleetwallError('METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url.pathname}`, { method: req.method ?? '' }),
      );
    }
    try {
      if (this.guard) await this.guard(req, m.route);
      await m.route.handler(req, res, m.params, url);
    } catch (err) {
      let fe = classifyError(err);
      if (!fe) {
        this.logger.error({ err, path: url.pathname }, 'internal error');
        fe = new FleetwallError('INTERNAL');
      }
      if (!res.headersSent) sendError(res, fe);
      else res.destroy();
    }
  }
}
