// Conversions between the Sync wire messages and the agent's own types:
// the agent's identity and pinned meta -> Hello, refusals ->
// google.rpc.Status with an ErrorInfo detail, datapath attachments ->
// InterfaceStatus, directions. (Rules: raw-rules.ts.)

import { NODE_LABEL } from '../../../common/src/labels.js';
import type { RuleDirection } from '../../../common/src/policy.js';
import type { SyncRequest } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { InterfaceAttachment, SyncMeta } from '../datapath/datapath.js';
import { EgressMode, type InterfaceStatus, XdpMode } from '../../../proto/gen/fleetwall/v1/node.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import { ErrorInfo } from '../../../proto/gen/google/rpc/error_details.js';
import type { Status } from '../../../proto/gen/google/rpc/status.js';

export const ERROR_DOMAIN = 'fleetwall.dev';

/** Who the node is and what it runs (SyncClientOptions' fields). */
export interface HelloIdentity {
  readonly nodeName: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly agentVersion: string;
  readonly capacityPerTable: number;
}

/** The Hello that opens a stream, resuming from the revision and store the kernel holds (`resume`, the pinned meta). */
export function helloOf(node: HelloIdentity, resume: SyncMeta, interfaces: InterfaceStatus[], agentInstanceId: string): SyncRequest {
  return {
    msg: {
      $case: 'hello',
      value: {
        nodeName: node.nodeName,
        // Every node carries its name as a label: a detection policy's node-scoped ban selects it.
        labels: { [NODE_LABEL]: node.nodeName, ...node.labels },
        agentVersion: node.agentVersion,
        interfaces,
        resumeRevision: resume.revision,
        storeId: resume.storeId,
        agentInstanceId,
        capacityPerTable: BigInt(node.capacityPerTable),
      },
    },
  };
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
    xdpMode:
      a.xdpMode === 'native' ? XdpMode.XDP_MODE_NATIVE : a.xdpMode === 'generic' ? XdpMode.XDP_MODE_GENERIC : XdpMode.XDP_MODE_NOT_ATTACHED,
    egressMode:
      a.egressMode === 'tcx'
        ? EgressMode.EGRESS_MODE_TCX
        : a.egressMode === 'clsact'
          ? EgressMode.EGRESS_MODE_CLSACT
          : EgressMode.EGRESS_MODE_NOT_ATTACHED,
  };
}

export function directionToWire(d: RuleDirection): Direction {
  return d === 'egress' ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS;
}
