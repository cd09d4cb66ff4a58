// Promisified ListService calls with partial messages, for tests.
import {
  CreateListRequest,
  type DeepPartial,
  DeleteListRequest,
  GetListRequest,
  type ListServiceClient,
  RefreshListRequest,
} from '../../proto/gen/fleetwall/v1/list_service.js';
import { unaryCall } from './control-plane.js';

export function listsApi(client: ListServiceClient, actor = 'test:lists') {
  return {
    create: (r: DeepPartial<CreateListRequest>) => unaryCall(client, 'createList', CreateListRequest.fromPartial(r), actor),
    get: (name: string) => unaryCall(client, 'getList', GetListRequest.fromPartial({ name }), actor),
    list: () => unaryCall(client, 'listLists', {}, actor),
    delete: (name: string) => unaryCall(client, 'deleteList', DeleteListRequest.fromPartial({ name }), actor),
    refresh: (name: string, force = false) => unaryCall(client, 'refreshList', RefreshListRequest.fromPartial({ name, force }), actor),
  };
}
