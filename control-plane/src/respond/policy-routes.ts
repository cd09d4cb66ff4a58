// The PolicyService over HTTP/JSON (proto3 JSON mapping, as json-api.ts):
//
//   POST   /v1/policies          body {"policy": DetectionPolicy} or a bare one; durations "1s";
//                                enums by full name or short ("tcp", "monitor", "network", "node")
//   GET    /v1/policies
//   GET    /v1/policies/{name}
//   DELETE /v1/policies/{name}
//   GET    /v1/bans              ?policy=NAME
import {
  CreatePolicyRequest,
  CreatePolicyResponse,
  DeletePolicyResponse,
  GetPolicyResponse,
  ListBansResponse,
  ListPoliciesResponse,
} from '../../../proto/gen/fleetwall/v1/policy_service.js';
import { callContext, durationJson, param } from '../http/json-api.js';
import { type HttpRouter, readJsonObject, sendJson } from '../http/router.js';
import type { PolicyService } from './policy-service.js';

type Obj = Record<string, unknown>;

const obj = (v: unknown): Obj | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined);

/** "tcp" -> "POLICY_PROTOCOL_TCP" (a full name, a number or anything else stays as it is: the validation names the field). */
function enumName(v: unknown, prefix: string): unknown {
  if (typeof v !== 'string' || v.toUpperCase().startsWith(prefix)) return v;
  return `${prefix}${v.toUpperCase()}`;
}

function durations(o: Obj | undefined, fields: readonly string[], path: string): Obj | undefined {
  if (!o) return o;
  const out = { ...o };
  for (const f of fields) if (out[f] !== undefined) out[f] = durationJson(out[f], `${path}.${f}`);
  return out;
}

/** The JSON body as CreatePolicyRequest.fromJSON reads it. */
export function policyJson(body: Obj): Obj {
  const raw = obj(body.policy) ?? body;
  const match = obj(raw.match);
  return {
    ...raw,
    ...(match
      ? { match: { ...match, protocol: enumName(match.protocol, 'POLICY_PROTOCOL_'), direction: enumName(match.direction, 'DIRECTION_') } }
      : {}),
    ...(raw.threshold !== undefined ? { threshold: durations(obj(raw.threshold), ['window'], 'policy.threshold') } : {}),
    ...(raw.response !== undefined
      ? { response: durations(obj(raw.response), ['duration', 'maxDuration', 'max_duration'], 'policy.response') }
      : {}),
    ...(raw.mode !== undefined ? { mode: enumName(raw.mode, 'MODE_') } : {}),
    ...(raw.grouping !== undefined ? { grouping: enumName(raw.grouping, 'SOURCE_GROUPING_') } : {}),
    ...(raw.scope !== undefined ? { scope: enumName(raw.scope, 'BAN_SCOPE_') } : {}),
  };
}

export function registerPolicyRoutes(router: HttpRouter, s: { readonly policies: PolicyService; readonly maxMessageBytes: number }): void {
  router.add('POST', '/v1/policies', async (req, res) => {
    const body = await readJsonObject(req, s.maxMessageBytes);
    const request = CreatePolicyRequest.fromJSON({ policy: policyJson(body) });
    sendJson(res, 200, CreatePolicyResponse.toJSON(await s.policies.createPolicy(request, callContext(req))));
  });
  router.add('GET', '/v1/policies', async (_req, res) => {
    sendJson(res, 200, ListPoliciesResponse.toJSON(await s.policies.listPolicies()));
  });
  router.add('GET', '/v1/policies/:name', async (_req, res, p) => {
    sendJson(res, 200, GetPolicyResponse.toJSON(await s.policies.getPolicy({ name: p.name! })));
  });
  router.add('DELETE', '/v1/policies/:name', async (req, res, p) => {
    sendJson(res, 200, DeletePolicyResponse.toJSON(await s.policies.deletePolicy({ name: p.name! }, callContext(req))));
  });
  router.add('GET', '/v1/bans', async (_req, res, _p, url) => {
    sendJson(res, 200, ListBansResponse.toJSON(await s.policies.listBans({ policy: param(url, 'policy') ?? '' })));
  });
}
