// The generated service definitions, as served: every request deserializer
// first checks the configured size limit (a larger message becomes a
// TooLargeMessage marker the adapters turn into RESOURCE_EXHAUSTED
// MESSAGE_TOO_LARGE with an ErrorInfo, instead of grpc-js's bare status),
// and AgentService writes pre-encoded SyncResponse bytes as they are.
import type { ServiceDefinition } from '@grpc/grpc-js';
import { AgentServiceService } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { SyncResponse } from '../../../proto/gen/fleetwall/v1/agent_service.js';

import { TooLargeMessage } from '../errors/message-too-large.js';

export { TooLargeMessage };

type AnyDefinition = Record<string, { requestDeserialize: (b: Buffer) => unknown; responseSerialize: (v: never) => Buffer }>;

export function guarded<T extends object>(def: T, maxBytes: number): T {
  const out: Record<string, unknown> = {};
  for (const [name, m] of Object.entries(def as unknown as AnyDefinition)) {
    const inner = m.requestDeserialize;
    out[name] = {
      ...m,
      requestDeserialize: (b: Buffer) => (b.length > maxBytes ? new TooLargeMessage(b.length, maxBytes) : inner(b)),
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
