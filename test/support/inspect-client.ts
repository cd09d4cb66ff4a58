// InspectService from tests: a client, WatchEvents collected into an array
// (until cancelled, or the server ends the stream), TopSources as a promise.

import { type ServiceError, credentials } from '@grpc/grpc-js';
import type { DropEvent } from '../../proto/gen/fleetwall/v1/event.js';
import {
  InspectServiceClient,
  TopSourcesRequest,
  type TopSourcesResponse,
  WatchEventsRequest,
} from '../../proto/gen/fleetwall/v1/inspect_service.js';

export interface Watch {
  readonly events: DropEvent[];
  missed: bigint;
  /** Resolves when the stream ends (the server ended it, or cancel()). */
  readonly done: Promise<ServiceError | null>;
  cancel(): void;
}

export function inspectClient(target: string): InspectServiceClient {
  return new InspectServiceClient(target, credentials.createInsecure());
}

/** WatchEvents; partial filters are filled in (fromPartial). */
export function watchEvents(c: InspectServiceClient, req: Record<string, unknown>): Watch {
  const call = c.watchEvents(WatchEventsRequest.fromPartial(req as never));
  const w: Watch = {
    events: [],
    missed: 0n,
    done: new Promise((resolve) => {
      call.on('error', (e: ServiceError) => resolve(e));
      call.on('end', () => resolve(null));
    }),
    cancel: () => call.cancel(),
  };
  call.on('data', (m: { events: DropEvent[]; missed: bigint }) => {
    w.events.push(...m.events);
    w.missed += m.missed;
  });
  return w;
}

export function topSources(c: InspectServiceClient, req: Record<string, unknown>): Promise<TopSourcesResponse> {
  return new Promise((resolve, reject) =>
    c.topSources(TopSourcesRequest.fromPartial(req as never), (e, r) => (e ? reject(e) : resolve(r!))),
  );
}
