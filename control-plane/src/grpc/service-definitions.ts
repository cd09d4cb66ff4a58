// The generated service definitions, as served: every request deserializer
// first checks the configured size limit and never throws (a larger message
// or bytes that do not decode become a marker the adapters turn into
// RESOURCE_EXHAUSTED MESSAGE_TOO_LARGE / INVALID_ARGUMENT MALFORMED_MESSAGE
// with an ErrorInfo, instead of grpc-js's bare status - INTERNAL for bytes it
// cannot decode), and AgentService writes pre-encoded SyncResponse bytes as
// they are.
import type { ServiceDefinition } from '@grpc/grpc-js';
import { AgentServiceService } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { SyncResponse } from '../../../proto/gen/fleetwall/v1/agent_service.js';

import { MalformedMessage, TooLargeMessage } from '../errors/refused-message.js';

export { TooLargeMessage };

function decodeOrMark(inner: (b: Buffer) => unknown, b: Buffer): unknown {
  try {
    return inner(b);
  } catch (e) {
    return new MalformedMessage(b.length, e instanceof Error ? e.message : String(e));
  }
}

type AnyDefinition = Record<string, { requestDeserialize: (b: Buffer) => unknown; responseSerialize: (v: never) => Buffer }>;

export function guarded<T extends object>(def: T, maxBytes: number): T {
  const out: Record<string, unknown> = {};
  for (const [name, m] of Object.entries(def as unknown as AnyDefinition)) {
    const inner = m.requestDeserialize;
    out[name] = {
      ...m,
      requestDeserialize: (b: Buffer) => (b.length > maxBytes ? new TooLargeMessage(b.length, maxBytes) : decodeOrMark(inner, b)),
    };
  }
  return out as T;
}

/** AgentService with a response serializer that passes pre-encoded bytes through. */
export function agentServiceDefinition(maxBytes: number): ServiceDefinition {
  const def = guarded(AgentServiceService, maxBytes);
  return {
    sync: {
      ...def.sync,
      responseSerialize: (v: SyncResponse | Buffer): Buffer => (Buffer.isBuffer(v) ? v : Buffer.from(SyncResponse.encode(v).finish())),
    },
  } as unknown as ServiceDefinition;
}
