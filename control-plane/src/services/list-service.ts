// ListService handlers: generated request messages in, responses out,
// catalogued FleetwallErrors thrown. Transport-free: the gRPC adapters and
// the HTTP routes (http/list-routes.ts) both call these. The work is in
// lists/ (list-refresher.ts).
import type {
  CreateListRequest,
  CreateListResponse,
  DeleteListRequest,
  DeleteListResponse,
  GetListRequest,
  GetListResponse,
  ListListsResponse,
  RefreshListRequest,
  RefreshListResponse,
} from '../../../proto/gen/fleetwall/v1/list_service.js';
import { notFound, type ListRefresher } from '../lists/list-refresher.js';
import { checkListName, type ListLimits, validateListSpec } from '../lists/list-spec.js';
import { type ListStore, listOfRow } from '../lists/list-store.js';
import type { CallContext } from './call-context.js';

export class ListService {
  constructor(
    private readonly store: ListStore,
    private readonly refresher: ListRefresher,
    private readonly limits: ListLimits,
  ) {}

  async createList(req: CreateListRequest, ctx: CallContext): Promise<CreateListResponse> {
    const spec = validateListSpec(req.list, this.limits);
    return { list: await this.refresher.create(spec, ctx.actor) };
  }

  async getList(req: GetListRequest): Promise<GetListResponse> {
    const name = checkListName(req.name);
    const row = await this.store.get(name);
    if (!row) throw notFound(name);
    return { list: listOfRow(row) };
  }

  async listLists(): Promise<ListListsResponse> {
    return { lists: (await this.store.all()).map(listOfRow) };
  }

  async deleteList(req: DeleteListRequest, ctx: CallContext): Promise<DeleteListResponse> {
    const out = await this.refresher.remove(checkListName(req.name), ctx.actor);
    return { removed: BigInt(out.removed), revision: out.revision };
  }

  async refreshList(req: RefreshListRequest, ctx: CallContext): Promise<RefreshListResponse> {
    return this.refresher.refresh(checkListName(req.name), { force: req.force, requestedBy: ctx.actor });
  }
}
