// The API boundary (RuleService, NodeService, CounterService, ExplainService,
// whether reached over gRPC or HTTP/JSON): every request message is walked
// with the proto schema (message-check.ts) before its handler runs; the
// handlers then check the grammar of what they interpret (CIDRs, selectors,
// update masks, enums' meaning) and the configured limits.
import { protoSchema } from './proto-schema.js';
import { checkMessage } from './message-check.js';

/** Checks `req`, the request of `method` ("RuleService/CreateRule"); returns it. */
export function checkApiRequest<T>(method: string, req: T): T {
  const type = protoSchema().requestTypes.get(method);
  if (!type) throw new Error(`edge check: no request type for ${method}`);
  checkMessage(type, req);
  return req;
}
