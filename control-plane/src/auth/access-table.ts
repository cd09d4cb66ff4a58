// Authorization in one place: the least a caller needs for every gRPC method
// and every HTTP route. The gRPC interceptor (grpc-auth.ts) and the HTTP
// guard (http-auth.ts) read only this table; a method or route without an
// entry is refused at start (the server will not start), so nothing new can
// be added unprotected (test/control-plane/security/access-table.test.ts).
//
//   public    no credential (health checks, reflection: the schema is public)
//   viewer / operator / admin   an API token of at least that role (or the
//             local admin on a loopback-trust control plane)
//   node      a node's own methods (Sync, certificate renewal): with TLS on,
//             the node's client certificate and nothing else; see
//             auth/sync-identity.ts
//   join-token  Enroll: the join token in the request, checked by the handler
//             (enrollment/enrollment-service.ts), single use
import type { Role } from './roles.js';

export type Access = 'public' | 'node' | 'join-token' | Role;

export const GRPC_ACCESS: Readonly<Record<string, Access>> = {
  '/fleetwall.v1.RuleService/CreateRule': 'operator',
  '/fleetwall.v1.RuleService/BatchCreateRules': 'operator',
  '/fleetwall.v1.RuleService/ImportRules': 'operator',
  '/fleetwall.v1.RuleService/GetRule': 'viewer',
  '/fleetwall.v1.RuleService/ListRules': 'viewer',
  '/fleetwall.v1.RuleService/UpdateRule': 'operator',
  '/fleetwall.v1.RuleService/DeleteRule': 'operator',
  '/fleetwall.v1.RuleService/BatchDeleteRules': 'operator',
  '/fleetwall.v1.RuleService/ManageAddress': 'operator',
  '/fleetwall.v1.NodeService/ListNodes': 'viewer',
  '/fleetwall.v1.NodeService/GetNode': 'viewer',
  '/fleetwall.v1.NodeService/UpdateNode': 'admin',
  '/fleetwall.v1.NodeService/RevokeNode': 'admin',
  '/fleetwall.v1.EnrollmentService/CreateJoinToken': 'admin',
  '/fleetwall.v1.EnrollmentService/ListJoinTokens': 'admin',
  '/fleetwall.v1.EnrollmentService/RevokeJoinToken': 'admin',
  '/fleetwall.v1.EnrollmentService/GetCertificateAuthority': 'public',
  '/fleetwall.v1.EnrollmentService/Enroll': 'join-token',
  '/fleetwall.v1.EnrollmentService/RenewCertificate': 'node',
  // Forgets a node and its counters (its agent re-registers when it reconnects).
  '/fleetwall.v1.NodeService/DeleteNode': 'admin',
  '/fleetwall.v1.CounterService/GetCounters': 'viewer',
  '/fleetwall.v1.CounterService/WatchCounters': 'viewer',
  '/fleetwall.v1.ExplainService/Explain': 'viewer',
  '/fleetwall.v1.AuditService/ListAuditEvents': 'viewer',
  '/fleetwall.v1.TokenService/CreateToken': 'admin',
  '/fleetwall.v1.TokenService/ListTokens': 'admin',
  '/fleetwall.v1.TokenService/RevokeToken': 'admin',
  // Creating a list makes the control plane fetch a URL or read a file on its host: an admin's.
  '/fleetwall.v1.ListService/CreateList': 'admin',
  '/fleetwall.v1.ListService/GetList': 'viewer',
  '/fleetwall.v1.ListService/ListLists': 'viewer',
  '/fleetwall.v1.ListService/DeleteList': 'operator',
  '/fleetwall.v1.ListService/RefreshList': 'operator',
  '/fleetwall.v1.InspectService/WatchEvents': 'viewer',
  '/fleetwall.v1.InspectService/TopSources': 'viewer',
  '/fleetwall.v1.AgentService/Sync': 'node',
  '/grpc.health.v1.Health/Check': 'public',
  '/grpc.health.v1.Health/Watch': 'public',
  '/grpc.health.v1.Health/List': 'public',
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': 'public',
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': 'public',
};

/** Keyed "METHOD /pattern" as registered with HttpRouter.add. HEAD follows GET. */
export const HTTP_ACCESS: Readonly<Record<string, Access>> = {
  'GET /healthz': 'public',
  'GET /metrics': 'viewer',
  'POST /v1/rules': 'operator',
  'GET /v1/rules': 'viewer',
  'GET /v1/rules/:id': 'viewer',
  'PATCH /v1/rules/:id': 'operator',
  'DELETE /v1/rules/:id': 'operator',
  'GET /v1/nodes': 'viewer',
  'GET /v1/nodes/:name': 'viewer',
  'PATCH /v1/nodes/:name': 'admin',
  'POST /v1/nodes/:name/revoke': 'admin',
  'POST /v1/join-tokens': 'admin',
  'GET /v1/join-tokens': 'admin',
  'DELETE /v1/join-tokens/:id': 'admin',
  'DELETE /v1/nodes/:name': 'admin',
  'GET /v1/counters': 'viewer',
  'GET /v1/explain': 'viewer',
  'GET /v1/audit': 'viewer',
  'POST /manage-ip': 'operator',
  'GET /v1/events': 'viewer',
  'GET /v1/top-sources': 'viewer',
  'POST /v1/rules:import': 'operator',
  'POST /v1/lists': 'admin',
  'GET /v1/lists': 'viewer',
  'GET /v1/lists/:name': 'viewer',
  'DELETE /v1/lists/:name': 'operator',
  'POST /v1/lists/:name/refresh': 'operator',
  'POST /v1/tokens': 'admin',
  'GET /v1/tokens': 'admin',
  'DELETE /v1/tokens/:id': 'admin',
};

export function httpAccessKey(method: string, pattern: string): string {
  return `${method.toUpperCase()} ${pattern}`;
}

/** The methods / routes among `registered` with no entry in `table` (must be none). */
export function missingEntries(registered: Iterable<string>, table: Readonly<Record<string, Access>>): string[] {
  return [...registered].filter((k) => !Object.hasOwn(table, k));
}
