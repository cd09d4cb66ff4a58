// Every route of the HTTP/JSON API, registered in one call: the server
// (control-plane.ts) and the access-table test register exactly the same set.
import { registerInspectRoutes } from '../inspect/inspect-http.js';
import type { InspectService } from '../inspect/inspect-service.js';
import { registerPolicyRoutes } from '../respond/policy-routes.js';
import type { PolicyService } from '../respond/policy-service.js';
import type { ListService } from '../services/list-service.js';
import { registerImportRoute } from './import-route.js';
import { type JsonApiServices, registerJsonApi } from './json-api.js';
import { registerListRoutes } from './list-routes.js';
import type { HttpRouter } from './router.js';

export interface ApiRouteServices extends JsonApiServices {
  readonly lists: ListService;
  readonly inspect: InspectService;
  readonly policies: PolicyService;
}

export function registerApiRoutes(router: HttpRouter, s: ApiRouteServices): void {
  registerJsonApi(router, s);
  registerImportRoute(router, s);
  registerListRoutes(router, s);
  registerInspectRoutes(router, s.inspect);
  registerPolicyRoutes(router, s);
}
