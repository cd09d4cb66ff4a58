// Small helpers for rule tests: promisified RuleService calls with partial
// messages, and direct store reads for "nothing stored" checks.
import type { ServiceError } from '@grpc/grpc-js';
import postgres from 'postgres';
import {
  type DeepPartial,
  BatchCreateRulesRequest,
  BatchDeleteRulesRequest,
  CreateRuleRequest,
  DeleteRuleRequest,
  GetRuleRequest,
  ImportRulesRequest,
  type ImportRulesHeader,
  type ImportRulesResponse,
  ListRulesRequest,
  type RuleServiceClient,
  UpdateRuleRequest,
} from '../../proto/gen/fleetwall/v1/rule_service.js';
import { Metadata } from '@grpc/grpc-js';
import { unaryCall } from './control-plane.js';

export function rulesApi(client: RuleServiceClient, actor = 'test:alice') {
  return {
    create: (r: DeepPartial<CreateRuleRequest>) => unaryCall(client, 'createRule', CreateRuleRequest.fromPartial(r), actor),
    batchCreate: (r: DeepPartial<BatchCreateRulesRequest>) =>
      unaryCall(client, 'batchCreateRules', BatchCreateRulesRequest.fromPartial(r), actor),
    get: (id: bigint) => unaryCall(client, 'getRule', GetRuleRequest.fromPartial({ id }), actor),
    list: (r: DeepPartial<ListRulesRequest> = {}) => unaryCall(client, 'listRules', ListRulesRequest.fromPartial(r), actor),
    update: (r: DeepPartial<UpdateRuleRequest>) => unaryCall(client, 'updateRule', UpdateRuleRequest.fromPartial(r), actor),
    delete: (id: bigint) => unaryCall(client, 'deleteRule', DeleteRuleRequest.fromPartial({ id }), actor),
    batchDelete: (ids: bigint[]) => unaryCall(client, 'batchDeleteRules', BatchDeleteRulesRequest.fromPartial({ ids }), actor),
    import: (
      header: DeepPartial<ImportRulesHeader> | undefined,
      chunks: string[][],
      opts: { skipHeader?: boolean; extraHeader?: boolean } = {},
    ) =>
      new Promise<ImportRulesResponse>((resolve, reject) => {
        const md = new Metadata();
        md.set('x-fleetwall-actor', actor);
        const call = client.importRules(md, (err: ServiceError | null, res?: ImportRulesResponse) => (err ? reject(err) : resolve(res!)));
        call.on('error', () => undefined);
        if (!opts.skipHeader) call.write(ImportRulesRequest.fromPartial({ part: { $case: 'header', value: header ?? {} } }));
        for (const lines of chunks) call.write(ImportRulesRequest.fromPartial({ part: { $case: 'chunk', value: { lines } } }));
        if (opts.extraHeader) call.write(ImportRulesRequest.fromPartial({ part: { $case: 'header', value: header ?? {} } }));
        call.end();
      }),
  };
}

/** Counts that must not move when a request is rejected. */
export async function storeState(url: string): Promise<{ rules: number; revision: bigint; audit: number; changes: number }> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, types: { bigint: postgres.BigInt } });
  try {
    const [r] = await sql<{ rules: number; revision: bigint; audit: number; changes: number }[]>`
      select (select count(*)::int from rules) as rules, (select value from revision_counter) as revision,
             (select count(*)::int from audit_log) as audit, (select count(*)::int from changes) as changes`;
    return r!;
  } finally {
    await sql.end();
  }
}

export async function withSql<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, types: { bigint: postgres.BigInt } });
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}
