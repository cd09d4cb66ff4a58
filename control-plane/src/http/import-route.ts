// POST /v1/rules:import - ImportRules over HTTP: the list is the request
// body, as published (text/plain, text/csv, JSON lines, ...), and the header
// is the query string:
//
//   curl --data-binary @drop.txt -H 'content-type: text/plain' \
//     'http://cp:8080/v1/rules:import?action=deny&format=plain&comment=spamhaus'
//
//   action (deny|allow, default deny), direction, mode, selector=k=v, ttl (3600s),
//   comment, atomic, format (auto|plain|range|jsonl|csv), column, allow_private
//
// The body is split into lines as it arrives and handed to the same service
// call as gRPC's stream (services/import-rules.ts): same parser, same
// numbers, same one revision. Answer: ImportRulesResponse as JSON.
import type { IncomingMessage } from 'node:http';
import { Action, actionFromJSON, directionFromJSON, modeFromJSON } from '../../../proto/gen/fleetwall/v1/rule.js';
import {
  BlocklistFormat,
  blocklistFormatFromJSON,
  type ImportRulesChunk,
  ImportRulesHeader,
  ImportRulesRequest,
  ImportRulesResponse,
} from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { checkApiRequest } from '../edge/api-input.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { FORMAT_NAMES } from '../rules/blocklist-options.js';
import type { RuleService } from '../services/rule-service.js';
import { callContext, durationJson, enumParam, param, selectorParam } from './json-api.js';
import { type HttpRouter, sendJson } from './router.js';

const LINES_PER_CHUNK = 8192;
/** A longer line is cut here (the parser reports it as LINE_TOO_LONG); memory stays bounded. */
const MAX_HELD_LINE = 65_536;
const TEXT_TYPES = ['application/octet-stream', 'application/x-ndjson', 'application/jsonl', 'application/csv'];

function checkContentType(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type.startsWith('text/') || TEXT_TYPES.includes(type)) return;
  throw new FleetwallError(
    'UNSUPPORTED_MEDIA_TYPE',
    `${type === '' ? 'missing Content-Type' : `Content-Type "${type}" is not supported here`}: send the list as it is published, with Content-Type: text/plain (or text/csv, application/x-ndjson)`,
    { content_type: type },
  );
}

function boolParam(url: URL, name: string): boolean {
  const v = param(url, name);
  if (v === undefined || v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw new FleetwallError('INVALID_QUERY', `${name} must be true or false, got "${v}"`, { field: name });
}

/** The format query parameter: a short name (csv) or the enum's (BLOCKLIST_FORMAT_CSV). */
export function formatParam(v: string | undefined): BlocklistFormat {
  if (v === undefined || v === '' || v.toLowerCase() === 'auto') return BlocklistFormat.BLOCKLIST_FORMAT_UNSPECIFIED;
  const name = v.toUpperCase().startsWith('BLOCKLIST_FORMAT_') ? v.toUpperCase() : `BLOCKLIST_FORMAT_${v.toUpperCase()}`;
  const f = blocklistFormatFromJSON(name);
  if (f === BlocklistFormat.UNRECOGNIZED || f === BlocklistFormat.BLOCKLIST_FORMAT_UNSPECIFIED) {
    throw new FleetwallError('INVALID_ENUM', `format "${v}" is not one of ${FORMAT_NAMES.join(', ')}`, { field: 'format', value: v });
  }
  return f;
}

/** The request body as chunks of lines. */
async function* bodyLines(req: IncomingMessage): AsyncGenerator<ImportRulesChunk> {
  const decoder = new TextDecoder('utf-8');
  let pending = '';
  let lines: string[] = [];
  const hold = (text: string) => {
    pending = pending.length + text.length > MAX_HELD_LINE ? (pending + text).slice(0, MAX_HELD_LINE + 1) : pending + text;
  };
  for await (const buf of req) {
    const text = decoder.decode(buf as Buffer, { stream: true });
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) break;
      hold(text.slice(start, nl));
      lines.push(pending);
      pending = '';
      start = nl + 1;
    }
    hold(text.slice(start));
    if (lines.length >= LINES_PER_CHUNK) {
      yield { lines };
      lines = [];
    }
  }
  hold(decoder.decode());
  if (pending !== '') lines.push(pending);
  if (lines.length) yield { lines };
}

export function registerImportRoute(router: HttpRouter, s: { readonly rules: RuleService }): void {
  router.add('POST', '/v1/rules:import', async (req, res, _p, url) => {
    checkContentType(req);
    const action = enumParam(url, 'action', actionFromJSON, 'deny, allow') ?? Action.ACTION_DENY;
    const direction = enumParam(url, 'direction', directionFromJSON, 'ingress, egress');
    const mode = enumParam(url, 'mode', modeFromJSON, 'enforce, monitor');
    const ttl = param(url, 'ttl');
    const header = ImportRulesHeader.fromPartial({
      action,
      ...(direction !== undefined ? { direction } : {}),
      ...(mode !== undefined ? { mode } : {}),
      selector: selectorParam(url),
      comment: param(url, 'comment') ?? '',
      atomic: boolParam(url, 'atomic'),
      format: formatParam(param(url, 'format')),
      column: param(url, 'column') ?? '',
      allowPrivate: boolParam(url, 'allow_private'),
      ...(ttl ? { ttl: ImportRulesHeader.fromJSON({ ttl: durationJson(ttl, 'ttl') }).ttl } : {}),
    });
    // The header gets the gRPC stream's field checks (NUL, sizes, enums); the lines go to the parser.
    checkApiRequest('RuleService/ImportRules', ImportRulesRequest.fromPartial({ part: { $case: 'header', value: header } }));
    const out = await s.rules.importRules(header, bodyLines(req), callContext(req));
    sendJson(res, 200, ImportRulesResponse.toJSON(out));
  });
}
