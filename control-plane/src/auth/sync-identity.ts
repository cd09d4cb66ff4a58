// Node identity on the node methods (AgentService.Sync,
// EnrollmentService.RenewCertificate; access 'node' in access-table.ts).
// Two checks, both here:
//
//   nodeCaller()     when the call opens (the gRPC interceptor, through
//                    authenticator.ts): who is this node? With TLS on, the
//                    node client certificate the TLS handshake verified
//                    against this control plane's CA (issued at enrollment,
//                    enrollment/), and nothing else: no API token, however
//                    high its role. On a loopback-trust or --insecure-no-auth
//                    control plane every caller may, as before issue 15.
//   checkHelloNode() when its Hello arrives: a stream may speak only for the
//                    certificate's node (PERMISSION_DENIED NODE_MISMATCH,
//                    before anything is recorded).
//
// What needs the store (revocation, the labels bound at enrollment) is
// enrollment/node-admission.ts, which the Sync session calls once, with the
// Hello, and which calls checkHelloNode() first.
import type { PeerCertificate } from 'node:tls';
import type { Hello } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { nodeIdentityOf } from './node-certificate.js';
import { nodePrincipal, type Principal } from './principal.js';
import { roleAtLeast } from './roles.js';

/** Without TLS: whether `principal` may call node methods; undefined: yes, else the role it lacks. */
export function nodeAccess(principal: Principal): 'admin' | undefined {
  if (principal.kind === 'local' || principal.kind === 'insecure' || principal.kind === 'node') return undefined;
  // A token presented to a loopback-trust control plane is still checked: only an admin's stands in for a node.
  return roleAtLeast(principal.role, 'admin') ? undefined : 'admin';
}

/** With TLS: the node principal of a verified client certificate, or the refusal. */
export function nodeCaller(what: string, cert: PeerCertificate | undefined): Principal | FleetwallError {
  const node = nodeIdentityOf(cert);
  if (node) return nodePrincipal(node);
  return new FleetwallError(
    'NODE_CERT_REQUIRED',
    cert?.raw
      ? `${what} needs a node client certificate (URI SAN fleetwall://node/<name>); this one names no node`
      : `${what} needs a node client certificate issued by this control plane, valid now: enroll the agent with a join token (fleetwall enroll create; agent --join-token and --ca-cert-hash), or renew it before it expires`,
  );
}

/** The Hello of a stream opened with a node certificate must name that node. Throws PERMISSION_DENIED NODE_MISMATCH. */
export function checkHelloNode(principal: Principal | undefined, hello: Hello): void {
  const node = principal?.node;
  if (!node || hello.nodeName === node.name) return;
  throw new FleetwallError(
    'NODE_MISMATCH',
    `this certificate is node ${JSON.stringify(node.name)}'s; a Hello for ${JSON.stringify(hello.nodeName.slice(0, 253))} is refused (an agent speaks only for its own node)`,
    { certificate_node: node.name, hello_node: hello.nodeName.slice(0, 253) },
  );
}
