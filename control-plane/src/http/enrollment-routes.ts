// The HTTP/JSON routes of node enrollment and node identity (issue 15 part 3):
//
//   POST   /v1/join-tokens           {"nodeName": "web-1", "labels": {"role": "web"}, "ttl": "3600s"}
//                                    -> {"token": "abcdef.0123456789abcdef", "joinToken": {...}, "caCertHash": "sha256:..."}
//   GET    /v1/join-tokens           ?include_inactive=true
//   DELETE /v1/join-tokens/{id}      revoke (idempotent)
//   PATCH  /v1/nodes/{name}          {"labels": {"role": "db"}}   the node's labels (all of them)
//   POST   /v1/nodes/{name}/revoke   refuse its certificates, close its stream
//
// All admin (auth/access-table.ts). Enroll, the CA and renewal are gRPC only:
// agents speak gRPC.
import type { IncomingMessage } from 'node:http';
import {
  CreateJoinTokenRequest,
  CreateJoinTokenResponse,
  ListJoinTokensRequest,
  ListJoinTokensResponse,
  RevokeJoinTokenRequest,
  RevokeJoinTokenResponse,
} from '../../../proto/gen/fleetwall/v1/enrollment_service.js';
import {
  RevokeNodeRequest,
  RevokeNodeResponse,
  UpdateNodeRequest,
  UpdateNodeResponse,
} from '../../../proto/gen/fleetwall/v1/node_service.js';
import type { EnrollmentService } from '../enrollment/enrollment-service.js';
import type { NodeIdentityService } from '../enrollment/node-identity-service.js';
import type { CallContext } from '../services/call-context.js';
import { type HttpRouter, readJsonObject, sendJson } from './router.js';
import { ttlJson } from './trust-routes.js';

export interface EnrollmentRouteDeps {
  readonly enrollment: EnrollmentService;
  readonly nodeIdentity: NodeIdentityService;
  readonly maxMessageBytes: number;
  readonly callContext: (req: IncomingMessage) => CallContext;
  readonly param: (url: URL, snake: string) => string | undefined;
}

export function registerEnrollmentRoutes(router: HttpRouter, d: EnrollmentRouteDeps): void {
  router.add('POST', '/v1/join-tokens', async (req, res) => {
    const body = await readJsonObject(req, d.maxMessageBytes);
    const out = await d.enrollment.createJoinToken(
      CreateJoinTokenRequest.fromJSON({ ...body, ttl: ttlJson(body.ttl) }),
      d.callContext(req),
    );
    sendJson(res, 200, CreateJoinTokenResponse.toJSON(out));
  });

  router.add('GET', '/v1/join-tokens', async (_req, res, _p, url) => {
    const out = await d.enrollment.listJoinTokens(
      ListJoinTokensRequest.fromPartial({ includeInactive: d.param(url, 'include_inactive') === 'true' }),
    );
    sendJson(res, 200, ListJoinTokensResponse.toJSON(out));
  });

  router.add('DELETE', '/v1/join-tokens/:id', async (req, res, p) => {
    const out = await d.enrollment.revokeJoinToken(RevokeJoinTokenRequest.fromPartial({ id: p.id! }), d.callContext(req));
    sendJson(res, 200, RevokeJoinTokenResponse.toJSON(out));
  });

  router.add('PATCH', '/v1/nodes/:name', async (req, res, p) => {
    const body = await readJsonObject(req, d.maxMessageBytes);
    const out = await d.nodeIdentity.updateNode(UpdateNodeRequest.fromJSON({ ...body, name: p.name! }), d.callContext(req));
    sendJson(res, 200, UpdateNodeResponse.toJSON(out));
  });

  router.add('POST', '/v1/nodes/:name/revoke', async (req, res, p) => {
    const out = await d.nodeIdentity.revokeNode(RevokeNodeRequest.fromPartial({ name: p.name! }), d.callContext(req));
    sendJson(res, 200, RevokeNodeResponse.toJSON(out));
  });
}
