// RuleService handlers: generated request messages in, generated response
// messages out, catalogued FleetwallErrors thrown. Transport-free: the gRPC
// adapters (grpc/) and the HTTP/JSON API (http/json-api.ts) both call these.
import type {
  BatchCreateRulesRequest,
  BatchCreateRulesResponse,
  BatchDeleteRulesRequest,
  BatchDeleteRulesResponse,
  CreateRuleRequest,
  CreateRuleResponse,
  DeleteRuleRequest,
  DeleteRuleResponse,
  GetRuleRequest,
  GetRuleResponse,
  ImportRulesChunk,
  ImportRulesHeader,
  ImportRulesResponse,
  ListRulesRequest,
  ListRulesResponse,
  ManageAddressRequest,
  ManageAddressResponse,
  UpdateRuleRequest,
  UpdateRuleResponse,
} from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { optionalAction, optionalDirection } from '../rules/enums.js';
import { filterFingerprint, type PageTokens } from '../rules/page-token.js';
import { selectorKey, validateSelector } from '../rules/selector.js';
import { applyUpdate, parseUpdateMask } from '../rules/update-mask.js';
import { parseIpAddress, type ValidationLimits, validateNewRule } from '../rules/validate.js';
import { notFound, type RuleFilter, type RuleStore } from '../store/rule-store.js';
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import type { BulkHandoff } from '../store/rule-import.js';
import { tableIndex } from '../sync/rule-cache.js';
import type { CallContext } from './call-context.js';
import type { CapacityGuard, Placement } from './capacity-guard.js';
import { type ImportLimits, ImportSlots, importRules } from './import-rules.js';
import { CreateBatcher } from './create-batcher.js';
import { type ManageAddressFields, manageAddress } from './manage-address.js';
import { type LockoutGuard, requireForceRole } from '../lockout/lockout-guard.js';
import { type ForcedBox, withAuditForced } from '../store/audit-forced.js';

export interface RuleServiceLimits extends ValidationLimits, ImportLimits {
  readonly maxBatch: number;
}

export interface RuleServiceExtras {
  readonly handoff?: BulkHandoff;
  readonly logger?: Logger;
  /** Refuses writes that would overfill some node's kernel tables. */
  readonly capacity?: CapacityGuard;
  /** Refuses denies that would cut off a protected address (the lockout guard). */
  readonly guard?: LockoutGuard;
}

const MAX_PAGE_SIZE = 1000;
const DEFAULT_PAGE_SIZE = 100;

export function checkBatchSize(n: number, max: number, field: string): void {
  if (n === 0) throw new FleetwallError('EMPTY_BATCH', `${field} is empty: send at least one entry`, { field });
  if (n > max) {
    throw new FleetwallError(
      'BATCH_TOO_LARGE',
      `${field} has ${n} entries; at most ${max} are accepted in one call: split it, or use ImportRules for large lists`,
      {
        field,
        count: String(n),
        max: String(max),
      },
    );
  }
}

function requireId(id: bigint, field: string): bigint {
  if (id === 0n)
    throw new FleetwallError('RULE_NOT_FOUND', `${field} is 0: rule ids start at 1; list rules to find one`, { rule_ids: '0' });
  return id;
}

function placement(spec: { selector: Readonly<Record<string, string>>; direction: number; cidr: string }, count = 1): Placement {
  return { selector: spec.selector, table: tableIndex(spec.direction, spec.cidr), count };
}

export class RuleService {
  private readonly creates: CreateBatcher;
  private readonly importSlots = new ImportSlots();

  constructor(
    private readonly store: RuleStore,
    private readonly sql: Sql,
    private readonly limits: RuleServiceLimits,
    private readonly tokens: PageTokens,
    private readonly now: () => Date = () => new Date(),
    private readonly extras: RuleServiceExtras = {},
  ) {
    this.creates = new CreateBatcher(store, limits.maxBatch);
  }

  async createRule(req: CreateRuleRequest, ctx: CallContext): Promise<CreateRuleResponse> {
    const spec = validateNewRule(req.rule, req.ttl, this.now(), this.limits);
    const forced = this.extras.guard ? await this.extras.guard.admitNew([{ spec, field: 'rule' }], req.force, ctx) : '';
    await this.extras.capacity?.check([placement(spec)], 'rule');
    if (forced !== '') {
      // A forced override is audited with its own transaction-local text: not part of a group commit.
      const res = await withAuditForced({ text: forced }, () => this.store.create([spec], ['rule'], ctx.actor, 'create'));
      return { rule: res.value[0], revision: res.revision };
    }
    const res = await this.creates.submit(spec, ctx.actor);
    return { rule: res.rule, revision: res.revision };
  }

  async batchCreateRules(req: BatchCreateRulesRequest, ctx: CallContext): Promise<BatchCreateRulesResponse> {
    checkBatchSize(req.requests.length, this.limits.maxBatch, 'requests');
    const now = this.now();
    const fields = req.requests.map((_, i) => `requests[${i}].rule`);
    const specs = req.requests.map((r, i) => {
      try {
        return validateNewRule(r.rule, r.ttl, now, this.limits, fields[i]);
      } catch (e) {
        if (e instanceof FleetwallError)
          throw new FleetwallError(e.reason, `${e.message}; nothing in the batch was stored`, { ...e.metadata, index: String(i) });
        throw e;
      }
    });
    const forced = this.extras.guard
      ? await this.extras.guard.admitNew(
          specs.map((spec, i) => ({ spec, field: fields[i]!, force: req.requests[i]!.force })),
          req.force,
          ctx,
        )
      : '';
    await this.extras.capacity?.check(
      specs.map((s) => placement(s)),
      'requests',
    );
    const write = () => this.store.create(specs, fields, ctx.actor, 'batch_create');
    const res = forced !== '' ? await withAuditForced({ text: forced }, write) : await write();
    return { rules: res.value, revision: res.revision };
  }

  importRules(header: ImportRulesHeader, chunks: AsyncIterable<ImportRulesChunk>, ctx: CallContext): Promise<ImportRulesResponse> {
    return importRules(header, chunks, ctx, {
      sql: this.sql,
      store: this.store,
      limits: this.limits,
      now: this.now,
      slots: this.importSlots,
      ...this.extras,
    });
  }

  async getRule(req: GetRuleRequest): Promise<GetRuleResponse> {
    const rule = await this.store.get(requireId(req.id, 'id'));
    if (!rule) throw notFound([req.id]);
    return { rule };
  }

  async listRules(req: ListRulesRequest): Promise<ListRulesResponse> {
    if (req.pageSize < 0)
      throw new FleetwallError(
        'INVALID_PAGE_SIZE',
        `page_size ${req.pageSize} is negative: use 1..${MAX_PAGE_SIZE}, or 0 for ${DEFAULT_PAGE_SIZE}`,
      );
    const size = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(req.pageSize, MAX_PAGE_SIZE);
    const selector = validateSelector(req.selector, 'selector');
    const filter: RuleFilter = {
      action: optionalAction(req.action, 'action'),
      direction: optionalDirection(req.direction, 'direction'),
      selector,
      text: req.text.trim() || undefined,
      coversAddress: req.coversAddress.trim() ? parseIpAddress(req.coversAddress.trim(), 'covers_address') : undefined,
    };
    const fingerprint = filterFingerprint({
      a: filter.action ?? 0,
      d: filter.direction ?? 0,
      s: selectorKey(selector),
      t: filter.text ?? '',
      c: req.coversAddress.trim(),
    });
    const after = req.pageToken ? this.tokens.decodeId(req.pageToken, fingerprint) : 0n;
    const page = await this.store.list(filter, after, size + 1);
    const more = page.rules.length > size;
    const rules = more ? page.rules.slice(0, size) : page.rules;
    return {
      rules,
      nextPageToken: more ? this.tokens.encode(rules[rules.length - 1]!.id.toString(), fingerprint) : '',
      totalSize: page.total,
      revision: page.revision,
    };
  }

  async updateRule(req: UpdateRuleRequest, ctx: CallContext): Promise<UpdateRuleResponse> {
    if (!req.rule) throw new FleetwallError('RULE_REQUIRED', 'rule is required: set rule.id and the fields named in update_mask');
    const mask = parseUpdateMask(req.updateMask ?? []);
    const id = requireId(req.rule.id, 'rule.id');
    const now = this.now();
    const capacity = this.extras.capacity;
    if (capacity && (mask.has('selector') || mask.has('direction'))) {
      // A rule that moves (another selector or direction) takes a place where it lands.
      const current = await this.store.get(id);
      if (!current) throw notFound([id]);
      const next = applyUpdate(current, req.rule, mask, now, this.limits);
      await capacity.check([placement(next), placement(current, -1)], 'rule');
    }
    const guard = this.extras.guard;
    if (!guard) {
      const res = await this.store.update(id, (current) => applyUpdate(current, req.rule!, mask, now, this.limits), ctx.actor);
      return { rule: res.value, revision: res.revision };
    }
    if (req.force) requireForceRole(ctx);
    const checker = await guard.checker();
    const box: ForcedBox = { text: '' };
    const write = () =>
      this.store.update(
        id,
        (current) => {
          const next = applyUpdate(current, req.rule!, mask, now, this.limits);
          box.text = guard.admitUpdate(checker, current, next, req.force, ctx);
          return next;
        },
        ctx.actor,
      );
    // Only a forced update can carry an override text (without force a hit throws).
    const res = req.force ? await withAuditForced(box, write) : await write();
    return { rule: res.value, revision: res.revision };
  }

  async deleteRule(req: DeleteRuleRequest, ctx: CallContext): Promise<DeleteRuleResponse> {
    const res = await this.store.delete([requireId(req.id, 'id')], ctx.actor, 'delete');
    return { revision: res.revision };
  }

  async batchDeleteRules(req: BatchDeleteRulesRequest, ctx: CallContext): Promise<BatchDeleteRulesResponse> {
    checkBatchSize(req.ids.length, this.limits.maxBatch, 'ids');
    req.ids.forEach((id, i) => requireId(id, `ids[${i}]`));
    const res = await this.store.delete(req.ids, ctx.actor, 'batch_delete');
    return { deleted: BigInt(res.value), revision: res.revision };
  }

  /** Block / allow / unblock one address fleet-wide (manage-address.ts); `fields` names the request's fields in messages. */
  manageAddress(req: ManageAddressRequest, ctx: CallContext, fields?: ManageAddressFields): Promise<ManageAddressResponse> {
    return manageAddress(this, req, ctx, fields, this.now);
  }
}
