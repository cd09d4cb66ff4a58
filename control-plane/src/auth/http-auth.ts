// The HTTP side of authentication and authorization, run by the router for
// every matched route before its handler (HttpRouter.setGuard): the DNS
// rebinding guard (on a loopback bind the Host header must name this host:
// 421 otherwise), then the route's entry in the access table and the
// caller's Authorization header through the same authenticator as gRPC.
// Refusals are the catalogue's JSON errors: 401 (with WWW-Authenticate:
// Bearer) or 403, held back for peers that keep failing. The principal of an
// accepted request is kept for the handlers (principalOfRequest).
import type { IncomingMessage } from 'node:http';
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { HttpGuard } from '../http/router.js';
import { type Access, HTTP_ACCESS, httpAccessKey, missingEntries } from './access-table.js';
import type { Authenticator } from './authenticator.js';
import type { Principal } from './principal.js';
import { normalizeHostName } from './security-mode.js';

const principals = new WeakMap<IncomingMessage, Principal>();

export function principalOfRequest(req: IncomingMessage): Principal | undefined {
  return principals.get(req);
}

export interface HttpGuardOptions {
  readonly auth: Authenticator;
  /** Host names a loopback-bound server answers to; undefined: no Host check (not bound to loopback). */
  readonly allowedHosts: ReadonlySet<string> | undefined;
  readonly onHostRefused: () => void;
}

/** The access an added route gets: its table entry, or the one it was registered with (tests, embedding). */
export function routeAccess(method: string, pattern: string, explicit?: Access): Access | undefined {
  return explicit ?? HTTP_ACCESS[httpAccessKey(method, pattern)];
}

export function httpGuard(o: HttpGuardOptions): HttpGuard {
  return async (req, route) => {
    const what = `${route.method} ${route.pattern}`;
    // checkHttpAccessTable() made sure at start that every route has one.
    const access = routeAccess(route.method, route.pattern, route.access as Access | undefined) ?? 'admin';
    if (o.allowedHosts) {
      const host = req.headers.host;
      if (host !== undefined && !o.allowedHosts.has(normalizeHostName(host))) {
        o.onHostRefused();
        throw new FleetwallError(
          'HOST_NOT_ALLOWED',
          `Host "${host}" is not a name of this control plane (${[...o.allowedHosts].join(', ')}); add it with --http-allowed-hosts`,
          { host },
        );
      }
    }
    const header = req.headers.authorization;
    let out = o.auth.check({ access, what, authorization: header, peer: req.socket.remoteAddress ?? 'unknown' });
    if (out instanceof Promise) out = await out;
    if (out.ok) {
      principals.set(req, out.principal);
      return;
    }
    const { error, delayMs } = out;
    await new Promise<void>((resolve) => o.auth.hold(delayMs, resolve));
    throw error;
  };
}

/** Refuses to start with a route that has neither a table entry nor an access of its own. */
export function checkHttpAccessTable(routes: readonly { method: string; pattern: string; access: string | undefined }[]): void {
  const keys = routes.filter((r) => r.access === undefined).map((r) => httpAccessKey(r.method, r.pattern));
  const missing = missingEntries(keys, HTTP_ACCESS);
  if (missing.length > 0) throw new Error(`HTTP routes without an entry in auth/access-table.ts: ${missing.join(', ')}`);
}
