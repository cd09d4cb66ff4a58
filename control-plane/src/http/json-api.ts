// The HTTP/JSON API (POST /v1/rules, GET /v1/rules, /manage-ip, ...) goes
// here: the same service-layer handlers the gRPC server uses, with requests
// and responses converted by ts-proto's fromJSON / toJSON. Register routes on
// the router; errors thrown by the services become JSON errors with the HTTP
// status of their catalogue code (router.ts).
//
//   router.add('POST', '/v1/rules', async (req, res) => {
//     const body = CreateRuleRequest.fromJSON(await readJson(req, limits.maxMessageBytes));
//     const out = await services.rules.createRule(body, { actor: actorOf(req) });
//     sendJson(res, 200, CreateRuleResponse.toJSON(out));
//   });
import type { CounterService } from '../services/counter-service.js';
import type { ExplainService } from '../services/explain-service.js';
import type { NodeService } from '../services/node-service.js';
import type { RuleService } from '../services/rule-service.js';
import type { HttpRouter } from './router.js';

export interface JsonApiServices {
  readonly rules: RuleService;
  readonly nodes: NodeService;
  readonly counters: CounterService;
  readonly explain: ExplainService;
  readonly maxMessageBytes: number;
}

export function registerJsonApi(_router: HttpRouter, _services: JsonApiServices): void {
  // Routes land in a later issue.
}
