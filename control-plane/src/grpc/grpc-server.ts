// The gRPC server: fleetwall.v1 services over the service layer, standard
// grpc.health.v1 health checking and server reflection (v1 and v1alpha), so
// grpcurl, grpc_health_probe and other languages' tools find the API.
import { fileURLToPath } from 'node:url';
import { Server, ServerCredentials, type ServerDuplexStream, type ServerInterceptor } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath, type ServingStatus } from 'grpc-health-check';
import { CounterServiceService } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import { ExplainServiceService } from '../../../proto/gen/fleetwall/v1/explain_service.js';
import { ListServiceService } from '../../../proto/gen/fleetwall/v1/list_service.js';
import { InspectServiceService } from '../../../proto/gen/fleetwall/v1/inspect_service.js';
import { NodeServiceService } from '../../../proto/gen/fleetwall/v1/node_service.js';
import type { ImportRulesRequest } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { RuleServiceService } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import type { SyncRequest, SyncResponse } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { AuditServiceService } from '../../../proto/gen/fleetwall/v1/audit_service.js';
import { TokenServiceService } from '../../../proto/gen/fleetwall/v1/token_service.js';
import { API_PROTO_FILES, protoSchema } from '../edge/proto-schema.js';
import { EnrollmentServiceService } from '../../../proto/gen/fleetwall/v1/enrollment_service.js';
import type { EnrollmentService } from '../enrollment/enrollment-service.js';
import type { NodeIdentityService } from '../enrollment/node-identity-service.js';
import { checkGrpcAccessTable, recordMethods } from '../auth/grpc-auth.js';
import type { AuditService } from '../services/audit-service.js';
import type { TokenService } from '../services/token-service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { CounterService } from '../services/counter-service.js';
import type { ExplainService } from '../services/explain-service.js';
import type { ListService } from '../services/list-service.js';
import type { InspectService } from '../inspect/inspect-service.js';
import type { NodeService } from '../services/node-service.js';
import type { RuleService } from '../services/rule-service.js';
import { type AdapterDeps, clientStream, serverStream, unary } from './adapters.js';
import { agentServiceDefinition, guarded } from './service-definitions.js';

export const SERVICE_NAMES = [
  'fleetwall.v1.RuleService',
  'fleetwall.v1.NodeService',
  'fleetwall.v1.CounterService',
  'fleetwall.v1.ExplainService',
  'fleetwall.v1.InspectService',
  'fleetwall.v1.AgentService',
  'fleetwall.v1.TokenService',
  'fleetwall.v1.AuditService',
  'fleetwall.v1.EnrollmentService',
  'fleetwall.v1.ListService',
] as const;

const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));
// The same files the edge checks read (one list: a served method without a schema would fail every call).
const PROTO_FILES = API_PROTO_FILES;

export interface GrpcHandlers {
  readonly rules: RuleService;
  readonly nodes: NodeService;
  readonly counters: CounterService;
  readonly explain: ExplainService;
  readonly inspect: InspectService;
  readonly sync: (call: ServerDuplexStream<SyncRequest, SyncResponse | Buffer>) => void;
  readonly tokens: TokenService;
  readonly audit: AuditService;
  readonly enrollment: EnrollmentService;
  readonly nodeIdentity: NodeIdentityService;
  readonly lists: ListService;
}

/** How the server is secured (auth/): TLS credentials or plaintext, and the one auth interceptor. */
export interface GrpcSecurity {
  readonly credentials: ServerCredentials | undefined;
  readonly interceptor: ServerInterceptor;
}

export interface GrpcServerHandle {
  readonly port: number;
  setServing(serving: boolean): void;
  /** Stops accepting calls; waits up to `graceMs` for running calls, then cancels them. */
  stop(graceMs: number): Promise<void>;
}

export interface GrpcServerLimits {
  /** HTTP/2 streams one connection may have open. */
  readonly maxConcurrentStreams?: number;
}

export async function startGrpcServer(
  host: string,
  port: number,
  maxMessageBytes: number,
  h: GrpcHandlers,
  deps: AdapterDeps,
  security: GrpcSecurity,
  limits: GrpcServerLimits = {},
): Promise<GrpcServerHandle> {
  const server = new Server({
    // Up to 1 MiB (or 2x when the limit is smaller) over maxMessageBytes, the
    // request reaches our deserializer and is rejected with a catalogued
    // MESSAGE_TOO_LARGE; beyond, grpc-js rejects it itself
    // (RESOURCE_EXHAUSTED) without buffering it.
    'grpc.max_receive_message_length': maxMessageBytes + Math.min(maxMessageBytes, 1024 * 1024),
    'grpc.max_send_message_length': -1,
    ...(limits.maxConcurrentStreams ? { 'grpc.max_concurrent_streams': limits.maxConcurrentStreams } : {}),
    // Server pings find peers that vanished without closing their connection.
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5000,
    // channelz bookkeeping costs CPU on every message of every agent stream.
    'grpc.enable_channelz': 0,
    // Every handler, ours and health/reflection alike, is behind this (auth/grpc-auth.ts).
    interceptors: [security.interceptor],
  });
  const registered = recordMethods(server);
  const g = (def: object) => guarded(def, maxMessageBytes) as never;

  server.addService(g(RuleServiceService), {
    createRule: unary(deps, 'RuleService/CreateRule', (req, ctx) => h.rules.createRule(req as never, ctx)),
    batchCreateRules: unary(deps, 'RuleService/BatchCreateRules', (req, ctx) => h.rules.batchCreateRules(req as never, ctx)),
    importRules: clientStream(deps, 'RuleService/ImportRules', async (messages: AsyncIterable<ImportRulesRequest>, ctx) => {
      const it = messages[Symbol.asyncIterator]();
      const first = await it.next();
      const part = first.done ? undefined : first.value.part;
      if (part?.$case !== 'header') {
        throw new FleetwallError(
          'IMPORT_HEADER_REQUIRED',
          'the first ImportRulesRequest must carry the header (action, direction, selector, ...); nothing was stored',
        );
      }
      async function* chunks() {
        for (;;) {
          const n = await it.next();
          if (n.done) return;
          const p = n.value.part;
          if (p?.$case === 'chunk') yield p.value;
          else if (p?.$case === 'header')
            throw new FleetwallError('IMPORT_HEADER_REQUIRED', 'the import sent a second header; send it once, first; nothing was stored');
        }
      }
      return h.rules.importRules(part.value, chunks(), ctx);
    }),
    getRule: unary(deps, 'RuleService/GetRule', (req) => h.rules.getRule(req as never)),
    listRules: unary(deps, 'RuleService/ListRules', (req) => h.rules.listRules(req as never)),
    updateRule: unary(deps, 'RuleService/UpdateRule', (req, ctx) => h.rules.updateRule(req as never, ctx)),
    deleteRule: unary(deps, 'RuleService/DeleteRule', (req, ctx) => h.rules.deleteRule(req as never, ctx)),
    batchDeleteRules: unary(deps, 'RuleService/BatchDeleteRules', (req, ctx) => h.rules.batchDeleteRules(req as never, ctx)),
    manageAddress: unary(deps, 'RuleService/ManageAddress', (req, ctx) => h.rules.manageAddress(req as never, ctx)),
  });
  server.addService(g(NodeServiceService), {
    listNodes: unary(deps, 'NodeService/ListNodes', (req) => h.nodes.listNodes(req as never)),
    getNode: unary(deps, 'NodeService/GetNode', (req) => h.nodes.getNode(req as never)),
    updateNode: unary(deps, 'NodeService/UpdateNode', (req, ctx) => h.nodeIdentity.updateNode(req as never, ctx)),
    revokeNode: unary(deps, 'NodeService/RevokeNode', (req, ctx) => h.nodeIdentity.revokeNode(req as never, ctx)),
    deleteNode: unary(deps, 'NodeService/DeleteNode', (req, ctx) => h.nodes.deleteNode(req as never, ctx)),
  });
  server.addService(g(CounterServiceService), {
    getCounters: unary(deps, 'CounterService/GetCounters', (req) => h.counters.getCounters(req as never)),
    watchCounters: serverStream(deps, 'CounterService/WatchCounters', (req, emit, ctx) =>
      h.counters.watchCounters(req as never, emit as never, ctx.signal),
    ),
  });
  server.addService(g(ExplainServiceService), {
    explain: unary(deps, 'ExplainService/Explain', (req) => h.explain.explain(req as never)),
  });
  server.addService(g(InspectServiceService), {
    watchEvents: serverStream(deps, 'InspectService/WatchEvents', (req, emit, ctx) =>
      h.inspect.watchEvents(req as never, emit as never, ctx.signal),
    ),
    topSources: unary(deps, 'InspectService/TopSources', async (req) => h.inspect.topSources(req as never)),
  });
  server.addService(agentServiceDefinition(maxMessageBytes), { sync: h.sync as never });
  server.addService(g(TokenServiceService), {
    createToken: unary(deps, 'TokenService/CreateToken', (req, ctx) => h.tokens.createToken(req as never, ctx)),
    listTokens: unary(deps, 'TokenService/ListTokens', (req) => h.tokens.listTokens(req as never)),
    revokeToken: unary(deps, 'TokenService/RevokeToken', (req, ctx) => h.tokens.revokeToken(req as never, ctx)),
  });
  server.addService(g(AuditServiceService), {
    listAuditEvents: unary(deps, 'AuditService/ListAuditEvents', (req) => h.audit.listAuditEvents(req as never)),
  });
  const en = h.enrollment;
  server.addService(g(EnrollmentServiceService), {
    createJoinToken: unary(deps, 'EnrollmentService/CreateJoinToken', (req, ctx) => en.createJoinToken(req as never, ctx)),
    listJoinTokens: unary(deps, 'EnrollmentService/ListJoinTokens', (req) => en.listJoinTokens(req as never)),
    revokeJoinToken: unary(deps, 'EnrollmentService/RevokeJoinToken', (req, ctx) => en.revokeJoinToken(req as never, ctx)),
    getCertificateAuthority: unary(deps, 'EnrollmentService/GetCertificateAuthority', () => en.getCertificateAuthority()),
    enroll: unary(deps, 'EnrollmentService/Enroll', (req) => en.enroll(req as never)),
    renewCertificate: unary(deps, 'EnrollmentService/RenewCertificate', (req, ctx) => en.renewCertificate(req as never, ctx)),
  });
  server.addService(g(ListServiceService), {
    createList: unary(deps, 'ListService/CreateList', (req, ctx) => h.lists.createList(req as never, ctx)),
    getList: unary(deps, 'ListService/GetList', (req) => h.lists.getList(req as never)),
    listLists: unary(deps, 'ListService/ListLists', () => h.lists.listLists()),
    deleteList: unary(deps, 'ListService/DeleteList', (req, ctx) => h.lists.deleteList(req as never, ctx)),
    refreshList: unary(deps, 'ListService/RefreshList', (req, ctx) => h.lists.refreshList(req as never, ctx)),
  });

  const statusMap: Record<string, ServingStatus> = { '': 'NOT_SERVING' };
  for (const s of SERVICE_NAMES) statusMap[s] = 'NOT_SERVING';
  const health = new HealthImplementation(statusMap);
  health.addToServer(server);
  const pkg = protoLoader.loadSync([...PROTO_FILES, healthProtoPath], {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  new ReflectionService(pkg).addToServer(server);
  checkGrpcAccessTable(registered());
  const schemaGaps = registered().filter(
    (path) => path.startsWith('/fleetwall.') && !protoSchema().requestTypes.has(path.replace(/^\/fleetwall\.v1\./, '')),
  );
  if (schemaGaps.length > 0)
    throw new Error(`edge checks have no request schema for ${schemaGaps.join(', ')}: add its .proto to API_PROTO_FILES`);

  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `${host.includes(':') ? `[${host}]` : host}:${port}`,
      security.credentials ?? ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    );
  });
  deps.logger.info({ port: bound, tls: security.credentials !== undefined }, 'gRPC listening');

  return {
    port: bound,
    setServing(serving) {
      const st: ServingStatus = serving ? 'SERVING' : 'NOT_SERVING';
      health.setStatus('', st);
      for (const s of SERVICE_NAMES) health.setStatus(s, st);
    },
    async stop(graceMs) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
}
