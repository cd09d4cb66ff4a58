// AuditService.ListAuditEvents (and GET /v1/audit): the audit log, newest
// first, paged; filters by actor, rule and action.
import type { AuditEvent, ListAuditEventsRequest, ListAuditEventsResponse } from '../../../proto/gen/fleetwall/v1/audit_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { filterFingerprint, type PageTokens } from '../rules/page-token.js';
import type { AuditFilter, AuditRow, AuditStore } from '../store/audit-store.js';

const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

function eventOf(r: AuditRow): AuditEvent {
  return {
    id: r.id,
    time: r.time,
    actor: r.actor,
    note: r.note,
    action: r.action,
    ruleId: r.rule_id ?? 0n,
    revision: r.revision ?? 0n,
    beforeJson: r.before === null || r.before === undefined ? '' : JSON.stringify(r.before),
    afterJson: r.after === null || r.after === undefined ? '' : JSON.stringify(r.after),
    forced: r.forced ?? '',
  };
}

export class AuditService {
  constructor(
    private readonly store: AuditStore,
    private readonly tokens: PageTokens,
  ) {}

  async listAuditEvents(req: ListAuditEventsRequest): Promise<ListAuditEventsResponse> {
    if (req.pageSize < 0 || req.pageSize > MAX_PAGE)
      throw new FleetwallError(
        'INVALID_PAGE_SIZE',
        `page_size ${req.pageSize} is out of range: use 1..${MAX_PAGE}, or 0 for ${DEFAULT_PAGE}`,
      );
    const size = req.pageSize === 0 ? DEFAULT_PAGE : req.pageSize;
    const filter: AuditFilter = {
      actor: req.actor.trim() || undefined,
      ruleId: req.ruleId === 0n ? undefined : req.ruleId,
      action: req.action.trim() || undefined,
    };
    const fingerprint = filterFingerprint({
      a: filter.actor ?? '',
      r: filter.ruleId?.toString() ?? '',
      x: filter.action ?? '',
      k: 'audit',
    });
    const before = req.pageToken ? this.tokens.decodeId(req.pageToken, fingerprint) : 0n;
    const rows = await this.store.list(filter, before, size + 1);
    const more = rows.length > size;
    const page = more ? rows.slice(0, size) : rows;
    return {
      events: page.map(eventOf),
      nextPageToken: more ? this.tokens.encode(page[page.length - 1]!.id.toString(), fingerprint) : '',
    };
  }
}
