// ExplainService: which rule decides for an address on a node, and why the
// other matching rules do not, by the reference semantics (common/src/policy.ts
// decide()) over the rules the node enforces.
import { type Address, formatAddress, parseCidr, type Prefix, prefixContainsAddress } from '../../../common/src/cidr.js';
import { decide, type MatchRole as PolicyRole, type PolicyRule } from '../../../common/src/policy.js';
import { MatchRole, Verdict, type ExplainRequest, type ExplainResponse } from '../../../proto/gen/fleetwall/v1/explain_service.js';
import { Action, Direction, Mode, type Rule } from '../../../proto/gen/fleetwall/v1/rule.js';
import { echo } from '../../../common/src/echo.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { directionOrDefault, policyAction, policyDirection, policyMode } from '../rules/enums.js';
import { parseIpAddress } from '../rules/validate.js';
import type { NodeStore } from '../store/node-store.js';
import type { RuleStore } from '../store/rule-store.js';
import type { FailsafeEntry } from '../../../proto/gen/fleetwall/v1/failsafe.js';
import type { NodePeerStore } from '../store/node-peers.js';

interface Candidate extends PolicyRule {
  /** A stored rule, or (failsafe set) one of the node's failsafe entries. */
  readonly rule: Rule | undefined;
  readonly failsafe?: FailsafeEntry;
}

/** Failsafe entries as candidates: allows with ids above every rule's (the agent's reserved range). */
const FAILSAFE_ID_BASE = 1n << 63n;

const ROLE: Record<PolicyRole, MatchRole> = {
  deciding: MatchRole.MATCH_ROLE_DECIDING,
  shadowed_by_allow: MatchRole.MATCH_ROLE_SHADOWED_BY_ALLOW,
  shorter_prefix: MatchRole.MATCH_ROLE_SHORTER_PREFIX,
};

function describe(r: Rule): string {
  return `rule ${r.id} (${r.action === Action.ACTION_ALLOW ? 'allow' : 'deny'} ${r.cidr}${r.mode === Mode.MODE_MONITOR ? ', monitor' : ''}${r.source ? `, from ${r.source}` : ''})`;
}

export class ExplainService {
  constructor(
    private readonly rules: RuleStore,
    private readonly nodes: NodeStore,
    /** The failsafe entries nodes report (the lockout guard); without it, only rules are explained. */
    private readonly failsafe?: Pick<NodePeerStore, 'failsafe'>,
  ) {}

  /** The node's failsafe entries containing `addr`, as candidates (they apply to both directions). */
  private async failsafeCandidates(nodeName: string, addr: Address, direction: Direction): Promise<Candidate[]> {
    if (!this.failsafe || !nodeName) return [];
    const out: Candidate[] = [];
    (await this.failsafe.failsafe(nodeName)).forEach((f, i) => {
      let prefix: Prefix;
      try {
        prefix = parseCidr(f.cidr);
      } catch {
        return;
      }
      if (!prefixContainsAddress(prefix, addr)) return;
      out.push({
        id: FAILSAFE_ID_BASE + BigInt(i),
        prefix,
        action: 'allow',
        mode: 'enforce',
        direction: policyDirection(direction),
        rule: undefined,
        failsafe: f,
      });
    });
    return out;
  }

  async explain(req: ExplainRequest): Promise<ExplainResponse> {
    const addr = parseIpAddress(req.address.trim(), 'address');
    const direction = directionOrDefault(req.direction, 'direction');
    const nodeName = req.nodeName.trim();
    let labels: Record<string, string> | undefined;
    if (nodeName) {
      labels = await this.nodes.labels(nodeName);
      if (!labels) {
        throw new FleetwallError(
          'NODE_NOT_FOUND',
          `no node named ${echo(nodeName)} has connected; leave node_name empty to explain the rules every node enforces`,
          { node: nodeName.slice(0, 63) },
        );
      }
    }
    const { rules, revision } = await this.rules.covering(addr, direction, labels);
    const candidates: Candidate[] = rules.map((rule) => ({
      id: rule.id,
      prefix: parseCidr(rule.cidr) as Prefix,
      action: policyAction(rule.action),
      mode: policyMode(rule.mode),
      direction: policyDirection(rule.direction),
      rule,
    }));
    candidates.push(...(await this.failsafeCandidates(nodeName, addr, direction)));
    const d = decide(candidates, policyDirection(direction), addr);
    const ruleMatches = d.matches.filter((m) => m.rule.rule !== undefined);
    const verdict =
      d.verdict === 'drop' ? Verdict.VERDICT_DROP : d.verdict === 'would_drop' ? Verdict.VERDICT_WOULD_DROP : Verdict.VERDICT_PASS;
    const a = formatAddress(addr);
    const where = nodeName ? `on ${nodeName}` : 'on every node';
    const dir = direction === Direction.DIRECTION_EGRESS ? 'egress (destination address)' : 'ingress (source address)';
    let explanation: string;
    const shadowed = ruleMatches.filter((m) => m.role === 'shadowed_by_allow').map((m) => describe(m.rule.rule!));
    const shadowText = shadowed.length
      ? `; allow beats deny, so ${shadowed.join(', ')} ${shadowed.length === 1 ? 'is' : 'are'} shadowed`
      : '';
    const fs = d.deciding?.failsafe;
    if (!d.deciding) {
      explanation = `no rule matches ${a} for ${dir} ${where}: the node default applies (pass)`;
    } else if (fs) {
      explanation =
        `${a} passes ${where} for ${dir}: the agent's failsafe entry ${fs.cidr} (${fs.source}) allows it whatever the policy, ` +
        `so the node keeps reaching its control plane${shadowText}`;
    } else {
      const dec = d.deciding.rule!;
      if (d.verdict === 'pass') {
        explanation = `${a} passes ${where} for ${dir}: ${describe(dec)} allows it${shadowText}`;
      } else if (d.verdict === 'drop') {
        explanation = `${a} is dropped ${where} for ${dir} by ${describe(dec)}`;
      } else {
        explanation = `${a} would be dropped ${where} for ${dir} by ${describe(dec)}: monitor mode counts it and lets it pass`;
      }
    }
    return {
      verdict,
      decidingRule: d.deciding?.rule,
      matches: ruleMatches.map((m) => ({ rule: m.rule.rule, role: ROLE[m.role] })),
      explanation,
      revision,
      failsafe: fs,
    };
  }
}
