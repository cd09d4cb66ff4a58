// A small router for the control plane's HTTP server. Routes are added with
// `router.add(method, '/v1/rules/:id', handler)`; `:name` segments arrive in
// `params`. Handlers may throw FleetwallError: it becomes the HTTP status of
// its catalogue entry with a JSON body {code, message, reason, metadata}.
// Every error the router itself answers (no route, wrong method, a body that
// is not a JSON object) is a catalogued FleetwallError too, and every route
// reads its body with readJsonObject, so a bad body gets the same reason on
// every route. A path the router cannot decode is a 400, never a closed
// socket; a body over the limit is a 413; JSON nested deeper than
// MAX_JSON_DEPTH is refused before it is parsed; a handler still running at
// the server deadline is answered 504 DEADLINE_EXCEEDED.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { echo } from '../../../common/src/echo.js';
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

/** Deepest nesting of arrays and objects a JSON body may have (no request message nests deeper than a few levels). */
export const MAX_JSON_DEPTH = 32;

/** The deepest nesting of `[`/`{` in JSON text, outside strings (stops counting past `limit`). */
export function jsonDepth(text: string, limit = MAX_JSON_DEPTH): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
      if (max > limit) return max;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

function tooLarge(maxBytes: number): FleetwallError {
  return new FleetwallError('MESSAGE_TOO_LARGE', `the request body is over ${maxBytes} bytes (FLEETWALL_MAX_MESSAGE_BYTES)`, {
    max_bytes: String(maxBytes),
  });
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
        : `Content-Type ${echo(type)} is not supported: send the body as JSON with Content-Type: application/json`,
      { content_type: type.slice(0, 64) },
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
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) throw tooLarge(maxBytes);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > maxBytes) throw tooLarge(maxBytes);
    parts.push(c as Buffer);
  }
  const text = Buffer.concat(parts).toString('utf8');
  if (text.trim() === '') return {};
  if (jsonDepth(text) > MAX_JSON_DEPTH) {
    throw new FleetwallError('INVALID_JSON', `the request body nests arrays or objects deeper than ${MAX_JSON_DEPTH} levels`, {
      max_depth: String(MAX_JSON_DEPTH),
    });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FleetwallError('INVALID_JSON', `the request body is not JSON (${(e as Error).message}): send a JSON object`);
  }
}

export interface RouterOptions {
  /** A handler still running after this long is answered 504 DEADLINE_EXCEEDED (FLEETWALL_CALL_TIMEOUT). */
  readonly callTimeoutMs?: number;
  /** Routes ("POST /v1/rules:import") bounded by their own settings instead (import timeouts, a list's fetch timeout). */
  readonly untimedRoutes?: ReadonlySet<string>;
}

export class HttpRouter {
  private readonly routes: Route[] = [];
  private guard: HttpGuard | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly options: RouterOptions = {},
  ) {}

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
        if (p.startsWith(':')) {
          try {
            params[p.slice(1)] = decodeURIComponent(segs[i]!);
          } catch {
            throw new FleetwallError('INVALID_QUERY', `path segment ${echo(segs[i]!)} is not valid percent-encoding (RFC 3986)`, {
              field: p.slice(1),
            });
          }
        } else if (p !== segs[i]) {
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
    let path = '';
    let timer: NodeJS.Timeout | undefined;
    try {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://localhost');
      } catch {
        throw new FleetwallError('INVALID_QUERY', `the request target ${echo(req.url ?? '')} is not a valid path`);
      }
      path = url.pathname;
      const m = this.match(req.method ?? 'GET', url.pathname);
      if (m === undefined)
        return sendError(res, new FleetwallError('ROUTE_NOT_FOUND', `no route for ${echo(path)}`, { path: path.slice(0, 128) }));
      if (m === 'method') {
        return sendError(
          res,
          new FleetwallError('METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${echo(path)}`, { method: req.method ?? '' }),
        );
      }
      const ms = this.options.untimedRoutes?.has(`${m.route.method} ${m.route.pattern}`) ? undefined : this.options.callTimeoutMs;
      const deadline = ms
        ? new Promise<never>((_, reject) => {
            timer = setTimeout(
              () =>
                reject(
                  new FleetwallError('DEADLINE_EXCEEDED', `the request did not finish within ${ms}ms (FLEETWALL_CALL_TIMEOUT)`, {
                    timeout_ms: String(ms),
                  }),
                ),
              ms,
            );
          })
        : undefined;
      const route = m.route;
      const run = (async () => {
        if (this.guard) await this.guard(req, route);
        await route.handler(req, res, m.params, url);
      })();
      if (deadline !== undefined) run.catch(() => undefined);
      await (deadline !== undefined ? Promise.race([run, deadline]) : run);
    } catch (err) {
      let fe = classifyError(err);
      if (!fe) {
        this.logger.error({ err, path }, 'internal error');
        fe = new FleetwallError('INTERNAL');
      }
      if (res.headersSent) res.destroy();
      else {
        // The rest of an oversized body is not read: the connection closes after the answer.
        if (fe.reason === 'MESSAGE_TOO_LARGE') res.setHeader('connection', 'close');
        sendError(res, fe);
      }
    } finally {
      clearTimeout(timer);
    }
  }
}
