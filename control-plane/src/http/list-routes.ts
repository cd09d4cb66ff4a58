// The ListService over HTTP/JSON (proto3 JSON mapping, as json-api.ts):
//
//   POST   /v1/lists                 body: {"list": RuleList} or a bare RuleList; "every": "3600s";
//                                    "format": "csv" or "BLOCKLIST_FORMAT_CSV"
//   GET    /v1/lists
//   GET    /v1/lists/{name}
//   DELETE /v1/lists/{name}          the list and every rule it owns, one revision
//   POST   /v1/lists/{name}/refresh  ?force=true: past the invalid-lines and shrink safeguards
import {
  CreateListRequest,
  CreateListResponse,
  DeleteListResponse,
  GetListResponse,
  ListListsResponse,
  RefreshListResponse,
} from '../../../proto/gen/fleetwall/v1/list_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { ListService } from '../services/list-service.js';
import { formatParam } from './import-route.js';
import { callContext, durationJson, param } from './json-api.js';
import { type HttpRouter, readJsonObject, sendJson } from './router.js';

export function registerListRoutes(router: HttpRouter, s: { readonly lists: ListService; readonly maxMessageBytes: number }): void {
  router.add('POST', '/v1/lists', async (req, res) => {
    const body = await readJsonObject(req, s.maxMessageBytes);
    const raw = 'list' in body && typeof body.list === 'object' && body.list !== null ? (body.list as Record<string, unknown>) : body;
    const { every, format, ...rest } = raw;
    if (format !== undefined && typeof format !== 'string' && typeof format !== 'number') {
      throw new FleetwallError('INVALID_ENUM', `list.format must be a string like "csv", got ${JSON.stringify(format)}`, {
        field: 'list.format',
      });
    }
    const request = CreateListRequest.fromJSON({
      list: {
        ...rest,
        ...(every !== undefined ? { every: durationJson(every, 'list.every') } : {}),
        ...(format !== undefined ? { format: typeof format === 'number' ? format : formatParam(format) } : {}),
      },
    });
    const out = await s.lists.createList(request, callContext(req));
    sendJson(res, 200, CreateListResponse.toJSON(out));
  });

  router.add('GET', '/v1/lists', async (_req, res) => {
    sendJson(res, 200, ListListsResponse.toJSON(await s.lists.listLists()));
  });

  router.add('GET', '/v1/lists/:name', async (_req, res, p) => {
    sendJson(res, 200, GetListResponse.toJSON(await s.lists.getList({ name: p.name! })));
  });

  router.add('DELETE', '/v1/lists/:name', async (req, res, p) => {
    sendJson(res, 200, DeleteListResponse.toJSON(await s.lists.deleteList({ name: p.name! }, callContext(req))));
  });

  router.add('POST', '/v1/lists/:name/refresh', async (req, res, p, url) => {
    const force = param(url, 'force');
    if (force !== undefined && force !== 'true' && force !== 'false') {
      throw new FleetwallError('INVALID_QUERY', `force must be true or false, got "${force}"`, { field: 'force' });
    }
    const out = await s.lists.refreshList({ name: p.name!, force: force === 'true' }, callContext(req));
    sendJson(res, 200, RefreshListResponse.toJSON(out));
  });
}
