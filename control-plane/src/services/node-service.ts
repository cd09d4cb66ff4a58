// NodeService handlers: the fleet as the control planes last heard of it,
// a page at a time, and deleting a node an operator no longer wants listed.
import { echo } from '../../../common/src/echo.js';
import type {
  DeleteNodeRequest,
  DeleteNodeResponse,
  GetNodeRequest,
  GetNodeResponse,
  ListNodesRequest,
  ListNodesResponse,
} from '../../../proto/gen/fleetwall/v1/node_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { filterFingerprint, type PageTokens } from '../rules/page-token.js';
import { selectorKey, validateSelector } from '../rules/selector.js';
import type { NodeStore } from '../store/node-store.js';
import type { RuleStore } from '../store/rule-store.js';
import type { CallContext } from './call-context.js';

const MAX_PAGE_SIZE = 1000;
const DEFAULT_PAGE_SIZE = 100;

export interface NodeServiceDeps {
  readonly nodes: NodeStore;
  readonly rules: RuleStore;
  readonly tokens: PageTokens;
  /** Gives this process's pending node state a bounded chance to be written first, so reads see it; never fails. */
  readonly settle: () => Promise<void>;
  /** A node was deleted: this process forgets what it holds of it (counter totals). */
  readonly forget?: (name: string) => void;
}

function notFound(name: string): FleetwallError {
  return new FleetwallError('NODE_NOT_FOUND', `no node named ${echo(name)} has connected; ListNodes shows the known nodes`, {
    node: name.slice(0, 63),
  });
}

function requireName(name: string): string {
  if (name.trim() === '')
    throw new FleetwallError('NODE_NAME_REQUIRED', 'name is empty: give a node name (ListNodes shows them)', { field: 'name' });
  return name;
}

export class NodeService {
  constructor(private readonly d: NodeServiceDeps) {}

  async listNodes(req: ListNodesRequest): Promise<ListNodesResponse> {
    const selector = validateSelector(req.selector, 'selector');
    if (req.pageSize < 0 || req.pageSize > MAX_PAGE_SIZE) {
      throw new FleetwallError(
        'INVALID_PAGE_SIZE',
        `page_size ${req.pageSize} is out of range: use 1..${MAX_PAGE_SIZE}, or 0 for ${DEFAULT_PAGE_SIZE}`,
        { field: 'page_size' },
      );
    }
    const size = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : req.pageSize;
    const fingerprint = filterFingerprint({ n: 1, s: selectorKey(selector), c: req.connectedOnly });
    const after = req.pageToken ? this.d.tokens.decode(req.pageToken, fingerprint) : '';
    await this.d.settle();
    const [page, revision] = await Promise.all([
      this.d.nodes.list(selector, req.connectedOnly, after, size + 1),
      this.d.rules.currentRevision(),
    ]);
    const more = page.length > size;
    const nodes = more ? page.slice(0, size) : page;
    return { nodes, revision, nextPageToken: more ? this.d.tokens.encode(nodes[nodes.length - 1]!.name, fingerprint) : '' };
  }

  async getNode(req: GetNodeRequest): Promise<GetNodeResponse> {
    requireName(req.name);
    await this.d.settle();
    const node = await this.d.nodes.get(req.name);
    if (!node) throw notFound(req.name);
    return { node };
  }

  async deleteNode(req: DeleteNodeRequest, ctx: CallContext): Promise<DeleteNodeResponse> {
    requireName(req.name);
    await this.d.settle();
    if (!(await this.d.nodes.delete(req.name, ctx.actor))) throw notFound(req.name);
    this.d.forget?.(req.name);
    return {};
  }
}
