// NodeService handlers: the fleet as the control planes last heard of it.
import type { GetNodeRequest, GetNodeResponse, ListNodesRequest, ListNodesResponse } from '../../../proto/gen/fleetwall/v1/node_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { validateSelector } from '../rules/selector.js';
import type { NodeStore } from '../store/node-store.js';
import type { RuleStore } from '../store/rule-store.js';

export class NodeService {
  constructor(
    private readonly nodes: NodeStore,
    private readonly rules: RuleStore,
    /** Writes this process's pending node state first, so reads see it. */
    private readonly flush: () => Promise<void>,
  ) {}

  async listNodes(req: ListNodesRequest): Promise<ListNodesResponse> {
    const selector = validateSelector(req.selector, 'selector');
    await this.flush();
    const [nodes, revision] = await Promise.all([this.nodes.list(selector, req.connectedOnly), this.rules.currentRevision()]);
    return { nodes, revision };
  }

  async getNode(req: GetNodeRequest): Promise<GetNodeResponse> {
    if (req.name.trim() === '') throw new FleetwallError('NODE_NAME_REQUIRED', 'name is empty: give a node name (ListNodes shows them)');
    await this.flush();
    const node = await this.nodes.get(req.name);
    if (!node)
      throw new FleetwallError(
        'NODE_NOT_FOUND',
        `no node named ${JSON.stringify(req.name)} has connected; ListNodes shows the known nodes`,
        { node: req.name.slice(0, 63) },
      );
    return { node };
  }
}
