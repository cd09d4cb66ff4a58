// PolicyService handlers (issue 18): generated request messages in,
// responses out, catalogued FleetwallErrors thrown. Transport-free: the gRPC
// adapters and the HTTP routes (policy-routes.ts) both call these.
import type { Ban, DetectionPolicy } from '../../../proto/gen/fleetwall/v1/policy.js';
import type {
  CreatePolicyRequest,
  CreatePolicyResponse,
  DeletePolicyRequest,
  DeletePolicyResponse,
  GetPolicyRequest,
  GetPolicyResponse,
  ListBansRequest,
  ListBansResponse,
  ListPoliciesResponse,
} from '../../../proto/gen/fleetwall/v1/policy_service.js';
import type { CallContext } from '../services/call-context.js';
import { checkPolicyName, policyOfSpec, validatePolicy } from './policy-spec.js';
import { type BanRow, type PolicyRow, type PolicyStore, policyNotFound } from './policy-store.js';

export function policyOfRow(r: PolicyRow): DetectionPolicy {
  return {
    ...policyOfSpec(r.spec),
    createTime: r.createTime,
    revision: r.revision,
    createdBy: r.createdBy,
    detections: r.detections,
    bans: r.bans,
    exempted: r.exempted,
  };
}

export function banOfRow(b: BanRow): Ban {
  return {
    source: b.source,
    policy: b.policy,
    node: b.node,
    expireTime: b.expireTime,
    offences: b.offences,
    ruleId: b.ruleId,
    packetsPerSecond: b.pps,
    bytesPerSecond: b.bps,
    firstTime: b.firstTime,
    lastTime: b.lastTime,
  };
}

export class PolicyService {
  constructor(
    private readonly store: PolicyStore,
    /** After a write: this process's agents get their sets at once (other processes on NOTIFY). */
    private readonly changed: () => Promise<void>,
    private readonly maxCommentLength: number,
  ) {}

  async createPolicy(req: CreatePolicyRequest, ctx: CallContext): Promise<CreatePolicyResponse> {
    const spec = validatePolicy(req.policy, this.maxCommentLength);
    const row = await this.store.create(spec, ctx.actor);
    await this.changed();
    return { policy: policyOfRow(row) };
  }

  async getPolicy(req: GetPolicyRequest): Promise<GetPolicyResponse> {
    const name = checkPolicyName(req.name);
    const row = await this.store.get(name);
    if (!row) throw policyNotFound(name);
    return { policy: policyOfRow(row) };
  }

  async listPolicies(): Promise<ListPoliciesResponse> {
    return { policies: (await this.store.all()).map(policyOfRow) };
  }

  async deletePolicy(req: DeletePolicyRequest, ctx: CallContext): Promise<DeletePolicyResponse> {
    await this.store.delete(checkPolicyName(req.name), ctx.actor);
    await this.changed();
    return {};
  }

  async listBans(req: ListBansRequest): Promise<ListBansResponse> {
    if (req.policy !== '') checkPolicyName(req.policy, 'policy');
    return { bans: (await this.store.bans(req.policy)).map(banOfRow) };
  }
}
