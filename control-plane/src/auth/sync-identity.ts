// THE hook for node identity on AgentService.Sync (issue 15 part 3 builds on
// it). Two checks, both here and nowhere else:
//
//   nodeAccess()      when the stream opens (the gRPC interceptor, access
//                     'node' in access-table.ts): may this caller open a Sync
//                     stream at all?
//   authorizeHello()  when its Hello arrives (sync/agent-session.ts): may it
//                     speak for the node it names?
//
// Today: on a loopback-trust or --insecure-no-auth control plane every caller
// may (the behaviour before issue 15). With TLS on, until node certificates
// exist, a Sync stream needs an admin API token (a stand-in: an admin can do
// everything a node can). Part 3 replaces this with the node's client
// certificate (call.getAuthContext().sslPeerCertificate, issued by
// pki/certificate-authority.ts issueClientCert) and a Hello whose node_name
// must be the certificate's (PERMISSION_DENIED otherwise, nothing recorded).
import type { Hello } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { Principal } from './principal.js';
import { roleAtLeast } from './roles.js';

/** Whether `principal` may open a Sync stream; undefined: yes, else the role it lacks. */
export function nodeAccess(principal: Principal): 'admin' | undefined {
  if (principal.kind === 'local' || principal.kind === 'insecure') return undefined;
  return roleAtLeast(principal.role, 'admin') ? undefined : 'admin';
}

/**
 * Called with the stream's principal and its Hello, before anything is
 * recorded; throws a FleetwallError (PERMISSION_DENIED) to refuse. Today it
 * accepts every Hello of a stream nodeAccess() let in.
 */
export function authorizeHello(_principal: Principal | undefined, _hello: Hello): void {}
