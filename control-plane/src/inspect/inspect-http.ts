// InspectService over HTTP:
//
//   GET /v1/events       ?follow=true&since=5m|<RFC 3339>&limit=N
//                        &node=a,b&rule=42&verdict=drop|would_drop&direction=ingress|egress
//                        &source=CIDR&destination=CIDR&proto=tcp,udp&port=53
//                        &kind=drop,detection,ban&policy=NAME
//                        &outcome=created|extended|exempted|covered|refused|merged
//                        (deny lists: the same names with "not_": not_source=10.0.0.0/8)
//                        -> newline-delimited JSON, one event per line (a DropEvent,
//                           proto3 JSON; detections and bans by its kind and detail);
//                           {"missed": "N"} lines when this watcher fell behind
//   GET /v1/top-sources  ?rule=42,43&window=1m&limit=10&node=a -> TopSourcesResponse JSON
//
// Every parameter is validated before the stream starts: a bad one is a 400
// INVALID_FILTER (or the CIDR's reason) naming the field, as over gRPC.

import { DURATION_EXAMPLES, parseDurationMs } from '../../../common/src/duration.js';
import { DropEvent, EventKind, EventVerdict } from '../../../proto/gen/fleetwall/v1/event.js';
import { BAN_OUTCOMES } from './inspect-event.js';
import {
  type EventFilter,
  TopSourcesRequest,
  TopSourcesResponse,
  type WatchEventsRequest,
} from '../../../proto/gen/fleetwall/v1/inspect_service.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { type HttpRouter, sendJson } from '../http/router.js';
import { compileFilters } from './event-filter.js';
import type { InspectService } from './inspect-service.js';

const bad = (field: string, msg: string) => new FleetwallError('INVALID_FILTER', `${field}: ${msg}`, { field });

function values(url: URL, name: string): string[] {
  return url.searchParams
    .getAll(name)
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

function ints(url: URL, name: string, field: string): number[] {
  return values(url, name).map((v) => {
    if (!/^\d{1,10}$/.test(v)) throw bad(field, `"${v}" is not a number`);
    return Number(v);
  });
}

function ids(url: URL, name: string, field: string): bigint[] {
  return values(url, name).map((v) => {
    if (!/^\d{1,20}$/.test(v) || BigInt(v) >= 2n ** 64n) throw bad(field, `"${v}" is not a rule id`);
    return BigInt(v);
  });
}

const VERDICTS: Record<string, EventVerdict> = {
  drop: EventVerdict.EVENT_VERDICT_DROP,
  would_drop: EventVerdict.EVENT_VERDICT_WOULD_DROP,
  'would-drop': EventVerdict.EVENT_VERDICT_WOULD_DROP,
};
const DIRECTIONS: Record<string, Direction> = { ingress: Direction.DIRECTION_INGRESS, egress: Direction.DIRECTION_EGRESS };
const KINDS: Record<string, EventKind> = {
  drop: EventKind.EVENT_KIND_DROP,
  detection: EventKind.EVENT_KIND_DETECTION,
  ban: EventKind.EVENT_KIND_BAN,
};
function named<T>(url: URL, name: string, field: string, table: Record<string, T>): T[] {
  return values(url, name).map((v) => {
    const t = table[v.toLowerCase()];
    if (t === undefined) throw bad(field, `"${v}" must be one of ${Object.keys(table).join(', ')}`);
    return t;
  });
}

/** One filter from the query (prefix "" for the allow filter, "not_" for the deny filter); null when no parameter is set. */
function filterOf(url: URL, prefix: string, list: string): EventFilter | null {
  const p = (n: string) => `${prefix}${n}`;
  const f: EventFilter = {
    nodeNames: values(url, p('node')),
    ruleIds: ids(url, p('rule'), `${list}.rule_ids`),
    verdicts: named(url, p('verdict'), `${list}.verdicts`, VERDICTS),
    directions: named(url, p('direction'), `${list}.directions`, DIRECTIONS),
    sourceCidrs: values(url, p('source')),
    destinationCidrs: values(url, p('destination')),
    protocols: values(url, p('proto')),
    ports: ints(url, p('port'), `${list}.ports`),
    kinds: named(url, p('kind'), `${list}.kinds`, KINDS),
    policies: values(url, p('policy')),
    outcomes: named(url, p('outcome'), `${list}.outcomes`, BAN_OUTCOMES),
  };
  return Object.values(f).some((v) => v.length > 0) ? f : null;
}

/** `since`: a duration back from now ("5m") or a time (RFC 3339). */
function sinceOf(text: string | null): Date | undefined {
  if (text === null || text === '') return undefined;
  const ms = parseDurationMs(text);
  if (ms !== undefined) return new Date(Date.now() - ms);
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw bad('since', `"${text}" is neither a duration (${DURATION_EXAMPLES}) nor an RFC 3339 time`);
  return new Date(t);
}

export function watchRequestOf(url: URL): WatchEventsRequest {
  const allow = filterOf(url, '', 'allow[0]');
  const deny = filterOf(url, 'not_', 'deny[0]');
  const follow = url.searchParams.get('follow');
  if (follow !== null && follow !== 'true' && follow !== 'false') throw bad('follow', `"${follow}" must be true or false`);
  const limit = ints(url, 'limit', 'limit');
  return {
    allow: allow ? [allow] : [],
    deny: deny ? [deny] : [],
    since: sinceOf(url.searchParams.get('since')),
    follow: follow === 'true',
    limit: limit[0] ?? 0,
  };
}

export function registerInspectRoutes(router: HttpRouter, inspect: InspectService): void {
  router.add('GET', '/v1/events', async (req, res, _p, url) => {
    const r = watchRequestOf(url);
    compileFilters(r.allow, r.deny); // bad filters are a 400 before the stream starts
    const ac = new AbortController();
    req.on('close', () => ac.abort());
    res.on('close', () => ac.abort());
    res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
    res.flushHeaders();
    await inspect.watchEvents(
      r,
      (m) =>
        new Promise<void>((resolve) => {
          if (ac.signal.aborted) return resolve();
          let text = '';
          if (m.missed > 0n) text += `${JSON.stringify({ missed: String(m.missed) })}\n`;
          for (const e of m.events) text += `${JSON.stringify(DropEvent.toJSON(e))}\n`;
          if (text === '' || res.write(text)) resolve();
          else res.once('drain', () => resolve());
        }),
      ac.signal,
    );
    if (!ac.signal.aborted) res.end();
  });

  router.add('GET', '/v1/top-sources', async (_req, res, _p, url) => {
    const w = url.searchParams.get('window');
    let window: { seconds: bigint; nanos: number } | undefined;
    if (w !== null && w !== '') {
      const ms = parseDurationMs(w);
      if (ms === undefined)
        throw new FleetwallError('INVALID_WINDOW', `window "${w}" is not a duration (${DURATION_EXAMPLES})`, { field: 'window' });
      window = { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
    }
    const out = inspect.topSources(
      TopSourcesRequest.fromPartial({
        ruleIds: ids(url, 'rule', 'rule_ids'),
        window,
        limit: ints(url, 'limit', 'limit')[0] ?? 0,
        nodeName: url.searchParams.get('node') ?? '',
      }),
    );
    sendJson(res, 200, TopSourcesResponse.toJSON(out));
  });
}
