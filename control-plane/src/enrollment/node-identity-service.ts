// NodeService.UpdateNode and RevokeNode (admin; also PATCH /v1/nodes/{name}
// and POST /v1/nodes/{name}/revoke): the two things only an admin may do to
// an enrolled node's identity. Relabeling moves the node to another policy
// group (its live stream is closed and its next Sync is a snapshot);
// revoking refuses its certificates from then on and closes its stream on
// every control-plane process within a second.
import type {
  RevokeNodeRequest,
  RevokeNodeResponse,
  UpdateNodeRequest,
  UpdateNodeResponse,
} from '../../../proto/gen/fleetwall/v1/node_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { CallContext } from '../services/call-context.js';
import type { NodeIdentityStore } from '../store/node-identity-store.js';
import { checkLabels } from './enrollment-service.js';

function notEnrolled(name: string): FleetwallError {
  return new FleetwallError(
    'NODE_NOT_FOUND',
    `no enrolled node named ${JSON.stringify(name.slice(0, 253))} (a node without a certificate takes its labels from its agent's --labels)`,
    { node: name.slice(0, 63) },
  );
}

export class NodeIdentityService {
  constructor(private readonly store: NodeIdentityStore) {}

  async updateNode(req: UpdateNodeRequest, ctx: CallContext): Promise<UpdateNodeResponse> {
    const name = req.name.trim();
    if (name === '') throw new FleetwallError('NODE_NAME_REQUIRED', 'name is empty: give a node name (fleetwall nodes ls)');
    checkLabels(req.labels, 'labels');
    const row = await this.store.relabel(name, { ...req.labels }, ctx.actor);
    if (!row) throw notEnrolled(name);
    return { name: row.name, labels: row.labels };
  }

  async revokeNode(req: RevokeNodeRequest, ctx: CallContext): Promise<RevokeNodeResponse> {
    const name = req.name.trim();
    if (name === '') throw new FleetwallError('NODE_NAME_REQUIRED', 'name is empty: give a node name (fleetwall nodes ls)');
    const n = await this.store.revokeNode(name, ctx.actor);
    if (n === undefined) throw notEnrolled(name);
    return { name, revokedCertificates: n };
  }
}
