// InspectService: WatchEvents (the history since a time, then live events,
// filtered by allow and deny lists) and TopSources (per rule, the addresses
// with the most estimated packets over a window). Transport-free: the gRPC
// adapter and the HTTP routes call these.

import type { DropEvent } from '../../../proto/gen/fleetwall/v1/event.js';
import type {
  TopSourcesRequest,
  TopSourcesResponse,
  WatchEventsRequest,
  WatchEventsResponse,
} from '../../../proto/gen/fleetwall/v1/inspect_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { WatcherQueue } from './event-history.js';
import { compileFilters } from './event-filter.js';
import type { InspectHub } from './inspect-hub.js';
import { topSources } from './top-sources.js';

/** Events per response message at most. */
const MAX_PER_MESSAGE = 512;
/** A watcher's queue (events waiting for a slow client) at most. */
const WATCHER_QUEUE = 10_000;
const DEFAULT_WINDOW_MS = 60_000;
export const MAX_WINDOW_MS = 600_000;

function durationMs(d: { seconds: bigint; nanos: number }): number {
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

export class InspectService {
  constructor(private readonly hub: InspectHub) {}

  /** Validates the request, then emits the history since `since` and, with follow, live events until `signal` aborts. */
  async watchEvents(req: WatchEventsRequest, emit: (res: WatchEventsResponse) => Promise<void> | void, signal: AbortSignal): Promise<void> {
    const accept = compileFilters(req.allow, req.deny);
    const limit = req.limit;
    let sent = 0;
    const h = this.hub.history;
    // Registered before the history is read: nothing falls between them (the history read is synchronous).
    const q = req.follow ? new WatcherQueue(WATCHER_QUEUE, accept) : null;
    const stop = q ? h.watch(q) : () => undefined;
    try {
      const send = async (events: DropEvent[], missed: number): Promise<boolean> => {
        for (let i = 0; i < events.length || (i === 0 && missed > 0); i += MAX_PER_MESSAGE) {
          let part = events.slice(i, i + MAX_PER_MESSAGE);
          if (limit > 0 && sent + part.length > limit) part = part.slice(0, limit - sent);
          await emit({ events: part, missed: BigInt(i === 0 ? missed : 0) });
          sent += part.length;
          if (limit > 0 && sent >= limit) return false;
        }
        return true;
      };
      if (req.since || !req.follow) {
        const past = h.since(req.since ? req.since.getTime() : 0).filter(accept);
        if (
          past.length > 0 &&
          !(await send(
            past.map((e) => e.wire),
            0,
          ))
        )
          return;
      }
      if (!q) return;
      while (!signal.aborted) {
        await q.wait(signal);
        if (signal.aborted) break;
        const missed = q.missed;
        q.missed = 0;
        const events = q.takeAll();
        if (
          !(await send(
            events.map((e) => e.wire),
            missed,
          ))
        )
          return;
      }
    } finally {
      stop();
    }
  }

  topSources(req: TopSourcesRequest): TopSourcesResponse {
    const ms = req.window ? durationMs(req.window) : 0;
    const windowMs = ms === 0 ? DEFAULT_WINDOW_MS : ms;
    if (windowMs < 1000 || windowMs > MAX_WINDOW_MS)
      throw new FleetwallError('INVALID_WINDOW', `window ${windowMs}ms is out of range: use 1s..10m`, { field: 'window' });
    if (req.limit > 1000)
      throw new FleetwallError('INVALID_FILTER', `limit: ${req.limit} is over 1000 addresses per rule`, { field: 'limit' });
    const rules = topSources(this.hub.history.recent(Date.now() - windowMs), {
      ruleIds: req.ruleIds.length > 0 ? new Set(req.ruleIds) : null,
      node: req.nodeName,
      limit: req.limit === 0 ? 10 : req.limit,
    });
    return { rules, window: { seconds: BigInt(Math.floor(windowMs / 1000)), nanos: (windowMs % 1000) * 1e6 } };
  }
}
