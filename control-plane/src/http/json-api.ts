// The HTTP/JSON API: the same service-layer handlers the gRPC server uses,
// with requests and responses in the proto3 JSON mapping (ts-proto's
// fromJSON / toJSON). Errors are JSON {code, message, reason, metadata} with
// the HTTP status of their gRPC code (router.ts).
//
//   POST   /v1/rules            body: CreateRuleRequest {"rule": {...}, "ttl": "3600s"} (or a bare Rule)
//   GET    /v1/rules            ?page_size&page_token&action&direction&text&covers_address&selector=k=v
//   GET    /v1/rules/{id}
//   PATCH  /v1/rules/{id}       body: Rule fields; ?update_mask=comment,expire_time (default: the fields sent)
//   DELETE /v1/rules/{id}
//   GET    /v1/nodes            ?selector=k=v&connected_only=true
//   GET    /v1/nodes/{name}
//   GET    /v1/counters         ?node_name&top_rules&rule_ids=1,2
//   GET    /v1/explain          ?address&node_name&direction
//   POST   /manage-ip           {"action": "block"|"allow"|"whitelist"|"unblock", "ip": "192.0.2.1", "ttl"?, "comment"?}
import type { IncomingMessage, ServerResponse } from 'node:http';
import { formatAddress, formatPrefix } from '../../../common/src/cidr.js';
import { DURATION_EXAMPLES, parseDurationMs } from '../../../common/src/duration.js';
import { LabelTextError, parseLabelText } from '../../../common/src/labels.js';
import { CounterQuery, GetCountersRequest, GetCountersResponse } from '../../../proto/gen/fleetwall/v1/counter_service.js';
import { ExplainRequest, ExplainResponse } from '../../../proto/gen/fleetwall/v1/explain_service.js';
import { GetNodeRequest, GetNodeResponse, ListNodesRequest, ListNodesResponse } from '../../../proto/gen/fleetwall/v1/node_service.js';
import { Action, Direction, Mode, Rule, directionFromJSON, actionFromJSON } from '../../../proto/gen/fleetwall/v1/rule.js';
import {
  CreateRuleRequest,
  CreateRuleResponse,
  DeleteRuleRequest,
  DeleteRuleResponse,
  GetRuleRequest,
  GetRuleResponse,
  ListRulesRequest,
  ListRulesResponse,
  UpdateRuleRequest,
  UpdateRuleResponse,
} from '../../../proto/gen/fleetwall/v1/rule_service.js';
import type { Duration } from '../../../proto/gen/google/protobuf/duration.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { parseRuleCidr } from '../rules/validate.js';
import type { CallContext } from '../services/call-context.js';
import { ACTOR_METADATA_KEY, normalizeActor } from '../services/call-context.js';
import type { CounterService } from '../services/counter-service.js';
import type { ExplainService } from '../services/explain-service.js';
import type { NodeService } from '../services/node-service.js';
import type { RuleService } from '../services/rule-service.js';
import { type HttpRouter, readJson, sendJson } from './router.js';

export interface JsonApiServices {
  readonly rules: RuleService;
  readonly nodes: NodeService;
  readonly counters: CounterService;
  readonly explain: ExplainService;
  readonly maxMessageBytes: number;
}

function callContext(req: IncomingMessage): CallContext {
  const header = req.headers[ACTOR_METADATA_KEY];
  const actor = Array.isArray(header) ? header[0] : header;
  return { actor: normalizeActor(actor ?? `http:${req.socket.remoteAddress ?? 'unknown'}`) };
}

/** 415 unless the body is declared as JSON. Returns false when it answered. */
function requireJson(req: IncomingMessage, res: ServerResponse): boolean {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json') return true;
  sendJson(res, 415, {
    code: 3,
    reason: 'UNSUPPORTED_MEDIA_TYPE',
    message:
      type === ''
        ? 'missing Content-Type: send the body as JSON with the header Content-Type: application/json'
        : `Content-Type "${type}" is not supported: send the body as JSON with Content-Type: application/json`,
    metadata: { content_type: type },
  });
  return false;
}

async function readObject(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown>> {
  const body = await readJson(req, maxBytes);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new FleetwallError('INVALID_JSON', 'the request body must be a JSON object, like {"action": "block", "ip": "192.0.2.1"}');
  }
  return body as Record<string, unknown>;
}

function parseId(text: string): bigint {
  if (!/^[1-9][0-9]{0,19}$/.test(text)) {
    throw new FleetwallError('INVALID_QUERY', `"${text}" is not a rule id: ids are positive integers (see GET /v1/rules)`, { id: text });
  }
  return BigInt(text);
}

/** ?selector=k=v&selector=k2=v2 (or k=v,k2=v2) -> labels. */
function selectorParam(url: URL): Record<string, string> {
  try {
    return parseLabelText(url.searchParams.getAll('selector'));
  } catch (e) {
    if (e instanceof LabelTextError) throw new FleetwallError('INVALID_SELECTOR', `selector: ${e.message}`, { field: 'selector' });
    throw e;
  }
}

/** A query parameter by its proto field name, snake_case or lowerCamelCase. */
function param(url: URL, snake: string): string | undefined {
  const camel = snake.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
  return url.searchParams.get(snake) ?? url.searchParams.get(camel) ?? undefined;
}

function enumParam<T extends number>(url: URL, name: string, fromJSON: (v: unknown) => T, allowed: string): T | undefined {
  const v = param(url, name);
  if (v === undefined || v === '') return undefined;
  const e = fromJSON(v.toUpperCase().startsWith(`${name.toUpperCase()}_`) ? v.toUpperCase() : `${name.toUpperCase()}_${v.toUpperCase()}`);
  if (e === (-1 as T)) throw new FleetwallError('INVALID_ENUM', `${name} "${v}" is not one of ${allowed}`, { field: name, value: v });
  return e;
}

function intParam(url: URL, name: string): number | undefined {
  const v = param(url, name);
  if (v === undefined || v === '') return undefined;
  if (!/^[0-9]{1,9}$/.test(v))
    throw new FleetwallError('INVALID_QUERY', `${name} must be a non-negative integer, got "${v}"`, { field: name });
  return Number(v);
}

/**
 * proto3 JSON writes google.protobuf.Duration as a string ("600s", "1.5s");
 * ts-proto's Duration.fromJSON only reads the {seconds, nanos} object form,
 * so canonical strings are converted here, at the JSON boundary.
 */
function durationJson(v: unknown, field: string): unknown {
  if (typeof v !== 'string') return v;
  const m = /^(-?)(\d{1,12})(?:\.(\d{1,9}))?s$/.exec(v.trim());
  if (!m) {
    throw new FleetwallError(
      'INVALID_TTL',
      `${field} ${JSON.stringify(v)} is not a proto3 JSON duration: use seconds with an "s" suffix, like "3600s" or "1.5s"`,
      { field },
    );
  }
  const sign = m[1] === '-' ? -1 : 1;
  return { seconds: String(sign * Number(m[2])), nanos: sign * Number((m[3] ?? '').padEnd(9, '0')) };
}

/** /manage-ip's optional ttl: seconds (3600) or a duration ("90s", "1h30m", "7d") -> Duration. */
function ttlOf(v: unknown): Duration | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const ms = typeof v === 'number' ? v * 1000 : typeof v === 'string' ? parseDurationMs(v) : undefined;
  if (ms === undefined || !Number.isFinite(ms) || ms < 1000) {
    throw new FleetwallError(
      'INVALID_TTL',
      `ttl ${JSON.stringify(v)} is not a duration of at least 1s: use a number of seconds (3600) or a string like ${DURATION_EXAMPLES}`,
    );
  }
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

const MANAGE_ACTIONS = ['block', 'allow', 'whitelist', 'unblock'] as const;
type ManageAction = (typeof MANAGE_ACTIONS)[number];

export function registerJsonApi(router: HttpRouter, s: JsonApiServices): void {
  router.add('POST', '/v1/rules', async (req, res) => {
    if (!requireJson(req, res)) return;
    const body = await readObject(req, s.maxMessageBytes);
    // The CreateRuleRequest shape, or a bare Rule for convenience.
    const { ttl, ...rest } = body;
    const request = CreateRuleRequest.fromJSON({
      rule: 'rule' in rest ? rest.rule : rest,
      ...(ttl !== undefined ? { ttl: durationJson(ttl, 'ttl') } : {}),
    });
    const out = await s.rules.createRule(request, callContext(req));
    sendJson(res, 200, CreateRuleResponse.toJSON(out));
  });

  router.add('GET', '/v1/rules', async (_req, res, _p, url) => {
    const action = enumParam(url, 'action', actionFromJSON, 'deny, allow');
    const direction = enumParam(url, 'direction', directionFromJSON, 'ingress, egress');
    const out = await s.rules.listRules(
      ListRulesRequest.fromPartial({
        pageSize: intParam(url, 'page_size') ?? 0,
        pageToken: param(url, 'page_token') ?? '',
        ...(action !== undefined ? { action } : {}),
        ...(direction !== undefined ? { direction } : {}),
        selector: selectorParam(url),
        text: param(url, 'text') ?? '',
        coversAddress: param(url, 'covers_address') ?? '',
      }),
    );
    sendJson(res, 200, ListRulesResponse.toJSON(out));
  });

  router.add('GET', '/v1/rules/:id', async (_req, res, p) => {
    const out = await s.rules.getRule(GetRuleRequest.fromPartial({ id: parseId(p.id!) }));
    sendJson(res, 200, GetRuleResponse.toJSON(out));
  });

  router.add('PATCH', '/v1/rules/:id', async (req, res, p, url) => {
    if (!requireJson(req, res)) return;
    const body = await readObject(req, s.maxMessageBytes);
    const fields = body.rule && typeof body.rule === 'object' ? (body.rule as Record<string, unknown>) : body;
    const mask =
      param(url, 'update_mask') ??
      (typeof body.updateMask === 'string' ? body.updateMask : undefined) ??
      Object.keys(fields)
        .filter((k) => k !== 'id')
        .map((k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`))
        .join(',');
    const out = await s.rules.updateRule(
      UpdateRuleRequest.fromJSON({
        rule: { ...fields, id: p.id },
        updateMask: mask
          .split(',')
          .map((x) => x.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase()))
          .join(','),
      }),
      callContext(req),
    );
    sendJson(res, 200, UpdateRuleResponse.toJSON(out));
  });

  router.add('DELETE', '/v1/rules/:id', async (req, res, p) => {
    const out = await s.rules.deleteRule(DeleteRuleRequest.fromPartial({ id: parseId(p.id!) }), callContext(req));
    sendJson(res, 200, DeleteRuleResponse.toJSON(out));
  });

  router.add('GET', '/v1/nodes', async (_req, res, _p, url) => {
    const out = await s.nodes.listNodes(
      ListNodesRequest.fromPartial({
        selector: selectorParam(url),
        connectedOnly: param(url, 'connected_only') === 'true',
      }),
    );
    sendJson(res, 200, ListNodesResponse.toJSON(out));
  });

  router.add('GET', '/v1/nodes/:name', async (_req, res, p) => {
    const out = await s.nodes.getNode(GetNodeRequest.fromPartial({ name: p.name! }));
    sendJson(res, 200, GetNodeResponse.toJSON(out));
  });

  router.add('GET', '/v1/counters', async (_req, res, _p, url) => {
    const ids = (param(url, 'rule_ids') ?? '')
      .split(',')
      .filter((x) => x !== '')
      .map(parseId);
    const out = await s.counters.getCounters(
      GetCountersRequest.fromPartial({
        query: CounterQuery.fromPartial({
          nodeName: param(url, 'node_name') ?? '',
          ruleIds: ids,
          topRules: intParam(url, 'top_rules') ?? 0,
        }),
      }),
    );
    sendJson(res, 200, GetCountersResponse.toJSON(out));
  });

  router.add('GET', '/v1/explain', async (_req, res, _p, url) => {
    const direction = enumParam(url, 'direction', directionFromJSON, 'ingress, egress');
    const out = await s.explain.explain(
      ExplainRequest.fromPartial({
        address: param(url, 'address') ?? '',
        nodeName: param(url, 'node_name') ?? '',
        ...(direction !== undefined ? { direction } : {}),
      }),
    );
    sendJson(res, 200, ExplainResponse.toJSON(out));
  });

  router.add('POST', '/manage-ip', async (req, res) => {
    if (!requireJson(req, res)) return;
    const body = await readObject(req, s.maxMessageBytes);
    const action = body.action;
    if (action === undefined || action === null || action === '') {
      throw new FleetwallError(
        'MISSING_FIELD',
        `missing field "action": send {"action": "block", "ip": "192.0.2.1"} with action one of ${MANAGE_ACTIONS.join(', ')}`,
        { field: 'action' },
      );
    }
    if (typeof action !== 'string' || !(MANAGE_ACTIONS as readonly string[]).includes(action.toLowerCase())) {
      throw new FleetwallError('UNKNOWN_ACTION', `action ${JSON.stringify(action)} is not one of ${MANAGE_ACTIONS.join(', ')}`, {
        field: 'action',
        value: String(action),
      });
    }
    const ip = body.ip;
    if (ip === undefined || ip === null || ip === '') {
      throw new FleetwallError(
        'MISSING_FIELD',
        'missing field "ip": send {"action": "block", "ip": "192.0.2.1"} (an IPv4/IPv6 address or a CIDR)',
        { field: 'ip' },
      );
    }
    if (typeof ip !== 'string')
      throw new FleetwallError('INVALID_CIDR', `field "ip" must be a string like "192.0.2.1", got ${JSON.stringify(ip)}`, { field: 'ip' });
    const out = await manageIp(s, action.toLowerCase() as ManageAction, ip, body, callContext(req));
    sendJson(res, 200, out);
  });
}

/** The /manage-ip verbs on top of the rule service: fleet-wide, ingress, no selector. */
async function manageIp(
  s: JsonApiServices,
  action: ManageAction,
  ip: string,
  body: Record<string, unknown>,
  ctx: CallContext,
): Promise<unknown> {
  // Same parser and catalogued errors (INVALID_CIDR / HOST_BITS_SET with the canonical form) as the rule service.
  const prefix = parseRuleCidr(ip, 'ip');
  const canonical = formatPrefix(prefix);
  const network = formatAddress(prefix);
  const existing = await s.rules.listRules(
    ListRulesRequest.fromPartial({
      pageSize: 1000,
      coversAddress: network,
      direction: Direction.DIRECTION_INGRESS,
    }),
  );
  const exact = existing.rules.filter((r) => r.cidr === canonical && Object.keys(r.selector).length === 0);
  const json = (r: Rule) => Rule.toJSON(r);
  const comment = typeof body.comment === 'string' ? body.comment : `manage-ip ${action}`;
  const ttl = ttlOf(body.ttl);

  if (action === 'block') {
    const deny = exact.find((r) => r.action === Action.ACTION_DENY);
    if (deny)
      return { ok: true, action, ip: canonical, result: 'already_blocked', rule: json(deny), revision: existing.revision.toString() };
    const allow = exact.find((r) => r.action === Action.ACTION_ALLOW);
    if (allow) {
      throw new FleetwallError(
        'DUPLICATE_RULE',
        `${canonical} is allowlisted by rule ${allow.id}; allow beats deny, so blocking it would have no effect. Delete rule ${allow.id} (DELETE /v1/rules/${allow.id}) first`,
        { existing_rule_id: allow.id.toString() },
      );
    }
    const out = await s.rules.createRule(
      CreateRuleRequest.fromPartial({
        rule: { cidr: canonical, action: Action.ACTION_DENY, direction: Direction.DIRECTION_INGRESS, mode: Mode.MODE_ENFORCE, comment },
        ...(ttl ? { ttl } : {}),
      }),
      ctx,
    );
    return { ok: true, action, ip: canonical, result: 'blocked', rule: json(out.rule!), revision: out.revision.toString() };
  }

  if (action === 'allow' || action === 'whitelist') {
    const allow = exact.find((r) => r.action === Action.ACTION_ALLOW);
    if (allow)
      return { ok: true, action, ip: canonical, result: 'already_allowed', rule: json(allow), revision: existing.revision.toString() };
    const deny = exact.find((r) => r.action === Action.ACTION_DENY);
    if (deny) {
      // Whitelisting a blocked address turns its rule into an allow (one revision).
      const out = await s.rules.updateRule(
        UpdateRuleRequest.fromPartial({
          rule: { id: deny.id, action: Action.ACTION_ALLOW, mode: Mode.MODE_ENFORCE, comment },
          updateMask: ['action', 'mode', 'comment'],
        }),
        ctx,
      );
      return { ok: true, action, ip: canonical, result: 'changed_to_allow', rule: json(out.rule!), revision: out.revision.toString() };
    }
    const out = await s.rules.createRule(
      CreateRuleRequest.fromPartial({
        rule: { cidr: canonical, action: Action.ACTION_ALLOW, direction: Direction.DIRECTION_INGRESS, mode: Mode.MODE_ENFORCE, comment },
        ...(ttl ? { ttl } : {}),
      }),
      ctx,
    );
    return { ok: true, action, ip: canonical, result: 'allowed', rule: json(out.rule!), revision: out.revision.toString() };
  }

  // unblock
  const deny = exact.find((r) => r.action === Action.ACTION_DENY);
  if (!deny) {
    const covering = existing.rules.filter((r) => r.action === Action.ACTION_DENY && r.cidr !== canonical);
    const hint =
      covering.length > 0
        ? `; it is covered by ${covering.map((r) => `rule ${r.id} (${r.cidr}${Object.keys(r.selector).length ? ' with a selector' : ''})`).join(', ')}`
        : '';
    throw new FleetwallError('NOT_BLOCKED', `${canonical} is not blocked by a fleet-wide rule of its own${hint}`, { ip: canonical });
  }
  const out = await s.rules.deleteRule(DeleteRuleRequest.fromPartial({ id: deny.id }), ctx);
  return { ok: true, action, ip: canonical, result: 'unblocked', rule: json(deny), revision: out.revision.toString() };
}
