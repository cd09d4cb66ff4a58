// Conversions between the Sync wire messages and the agent's own types:
// AgentRule -> RuleSpec (validated: the kernel never sees a rule the agent
// could not check), refusals -> google.rpc.Status with an ErrorInfo detail,
// datapath attachments -> InterfaceStatus.

import { CidrError, prefixFromBytes } from '../../../common/src/cidr.js';
import type { RuleDirection, RuleMode } from '../../../common/src/policy.js';
import type { InterfaceAttachment } from '../datapath/datapath.js';
import type { AgentRule } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { EgressMode, type InterfaceStatus, XdpMode } from '../../../proto/gen/fleetwall/v1/node.js';
import { Action, Direction, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import { ErrorInfo } from '../../../proto/gen/google/rpc/error_details.js';
import type { Status } from '../../../proto/gen/google/rpc/status.js';
import type { RuleSpec } from '../reconcile/rule-table.js';

export const ERROR_DOMAIN = 'fleetwall.dev';

export type WireRuleResult = { readonly ok: true; readonly spec: RuleSpec } | { readonly ok: false; readonly reason: string };

/** Validates a rule from the wire. Never throws. */
export function ruleFromWire(r: AgentRule): WireRuleResult {
  if (r.action !== Action.ACTION_DENY && r.action !== Action.ACTION_ALLOW) {
    return { ok: false, reason: `action ${r.action} is not supported by this agent (expected ACTION_DENY or ACTION_ALLOW)` };
  }
  let direction: RuleDirection;
  if (r.direction === Direction.DIRECTION_INGRESS || r.direction === Direction.DIRECTION_UNSPECIFIED) direction = 'ingress';
  else if (r.direction === Direction.DIRECTION_EGRESS) direction = 'egress';
  else return { ok: false, reason: `direction ${r.direction} is not supported by this agent` };
  let mode: RuleMode;
  if (r.mode === Mode.MODE_ENFORCE || r.mode === Mode.MODE_UNSPECIFIED) mode = 'enforce';
  else if (r.mode === Mode.MODE_MONITOR) mode = 'monitor';
  else return { ok: false, reason: `mode ${r.mode} is not supported by this agent` };
  let prefix;
  try {
    prefix = prefixFromBytes(r.address, r.prefixLength);
  } catch (e) {
    return { ok: false, reason: e instanceof CidrError ? e.message : String(e) };
  }
  const expireUnixMs = r.expireTime ? r.expireTime.getTime() : 0;
  if (Number.isNaN(expireUnixMs)) return { ok: false, reason: 'expire_time is not a valid time' };
  return { ok: true, spec: { id: r.id, direction, prefix, action: r.action === Action.ACTION_ALLOW ? 'allow' : 'deny', mode, expireUnixMs } };
}

/** google.rpc.Status with one ErrorInfo{reason, domain fleetwall.dev, metadata}. */
export function statusOf(code: number, reason: string, message: string, metadata: Readonly<Record<string, string>>): Status {
  const info = ErrorInfo.encode({ reason, domain: ERROR_DOMAIN, metadata: { ...metadata } }).finish();
  return {
    code,
    message,
    details: [{ typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from(info) }],
  };
}

export function interfaceStatus(a: InterfaceAttachment): InterfaceStatus {
  return {
    name: a.ifname,
    ifindex: a.ifindex,
    xdpMode: a.xdpMode === 'native' ? XdpMode.XDP_MODE_NATIVE : a.xdpMode === 'generic' ? XdpMode.XDP_MODE_GENERIC : XdpMode.XDP_MODE_NOT_ATTACHED,
    egressMode: a.egressMode === 'tcx' ? EgressMode.EGRESS_MODE_TCX : a.egressMode === 'clsact' ? EgressMode.EGRESS_MODE_CLSACT : EgressMode.EGRESS_MODE_NOT_ATTACHED,
  };
}

export function directionToWire(d: RuleDirection): Direction {
  return d === 'egress' ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS;
}
