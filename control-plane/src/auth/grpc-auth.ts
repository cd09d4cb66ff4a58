// The gRPC side of authentication and authorization: one server interceptor
// in front of every handler (fleetwall.v1, health, reflection alike). It
// reads the method's entry in the access table, authenticates the caller
// (authenticator.ts) before any handler runs, and either refuses the call
// with UNAUTHENTICATED / PERMISSION_DENIED and an ErrorInfo (the handler never
// starts, nothing is stored) or passes the principal on to the handler in
// call metadata (PRINCIPAL_METADATA_KEY, which a client cannot set: it is
// removed from what the client sent first).
import { type Metadata, type Server, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import type { PartialStatusObject } from '@grpc/grpc-js/build/src/call-interface.js';
import type { Logger } from 'pino';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { toGrpcStatus } from '../errors/to-grpc-status.js';
import { GRPC_ACCESS, missingEntries } from './access-table.js';
import type { AuthOutcome, Authenticator } from './authenticator.js';
import { decodePrincipal, encodePrincipal, type Principal } from './principal.js';

export const PRINCIPAL_METADATA_KEY = 'x-fleetwall-internal-principal';

/** "127.0.0.1:5000" -> "127.0.0.1", "[::1]:5000" -> "::1". */
export function peerAddress(peer: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(peer) ?? /^([^:]+):\d+$/.exec(peer);
  return m ? m[1]! : peer;
}

/** The principal the interceptor established for this call. */
export function principalOfMetadata(md: Metadata): Principal | undefined {
  const v = md.get(PRINCIPAL_METADATA_KEY)[0];
  return typeof v === 'string' ? decodePrincipal(v) : undefined;
}

export function grpcAuthInterceptor(auth: Authenticator, logger: Logger): ServerInterceptor {
  return (method, call) => {
    const path = method.path;
    const access = GRPC_ACCESS[path];
    const what = path.replace(/^\/fleetwall\.v1\./, '').replace(/^\//, '');
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, pass) => {
            metadata.remove(PRINCIPAL_METADATA_KEY);
            const refuse = (err: unknown) => call.sendStatus(toGrpcStatus(err, logger, what) as PartialStatusObject);
            if (access === undefined) {
              // Unreachable: the server does not start with a method missing from the table.
              refuse(new FleetwallError('ROLE_TOO_LOW', `${what} has no entry in the access table`, { required_role: 'admin' }));
              return;
            }
            const authorization = metadata.get('authorization')[0];
            const done = (o: AuthOutcome) => {
              if (o.ok) {
                metadata.set(PRINCIPAL_METADATA_KEY, encodePrincipal(o.principal));
                pass(metadata);
              } else auth.hold(o.delayMs, () => refuse(o.error));
            };
            const out = auth.check({
              access,
              what,
              authorization: typeof authorization === 'string' ? authorization : undefined,
              peer: peerAddress(call.getPeer()),
              peerCertificate: () => call.getAuthContext()?.sslPeerCertificate,
            });
            if (out instanceof Promise) out.then(done, refuse);
            else done(out);
          },
        });
      },
    });
  };
}

/**
 * Records every method added to `server` (fleetwall.v1 services, health,
 * reflection) so that checkAccessTable() can refuse to start with one that
 * the access table does not cover.
 */
export function recordMethods(server: Server): () => string[] {
  const paths: string[] = [];
  const add = server.addService.bind(server);
  server.addService = (service, implementation) => {
    for (const m of Object.values(service)) paths.push((m as { path: string }).path);
    add(service, implementation);
  };
  return () => [...paths];
}

export function checkGrpcAccessTable(paths: readonly string[]): void {
  const missing = missingEntries(paths, GRPC_ACCESS);
  if (missing.length > 0) throw new Error(`gRPC methods without an entry in auth/access-table.ts: ${missing.join(', ')}`);
}
