// The hostile-input suite's test bed: a real control plane on a real
// Postgres, what a rejected request must leave unchanged (every table a
// request can write: rules, revisions, changes, audit, nodes, counters), raw
// HTTP (no client-side normalisation of the path), and the check that runs
// after every poisoning attempt: a new agent still reaches InSync, and
// /healthz, /v1/counters, /v1/nodes and ListNodes still answer.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { status, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Config } from '../../../control-plane/src/config.js';
import { ListNodesRequest } from '../../../proto/gen/fleetwall/v1/node_service.js';
import { callError, errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres.js';
import { rulesApi, withSql } from '../../support/rule-fixtures.js';
import { SyncClient } from '../../support/scripted-agent.js';

export interface Rig {
  readonly pg: TestPostgres;
  readonly url: string;
  readonly cp: TestControlPlane;
  readonly api: ReturnType<typeof rulesApi>;
  stop(): Promise<void>;
}

/** A control plane on a new database; on a new Postgres unless `opts.pg` is given (then stop() leaves it running). */
export async function startRig(overrides: Partial<Config> = {}, opts: { pg?: TestPostgres; logger?: Logger } = {}): Promise<Rig> {
  const pg = opts.pg ?? (await startTestPostgres());
  const url = await pg.newDatabase();
  const cp = await startTestControlPlane(url, { maxMessageBytes: 256 * 1024, ...overrides }, { logger: opts.logger });
  return {
    pg,
    url,
    cp,
    api: rulesApi(cp.clients.rules, 'test:hostile'),
    async stop() {
      await cp.stop();
      if (!opts.pg) await pg.stop();
    },
  };
}

export interface Counts {
  readonly rules: number;
  readonly revision: bigint;
  readonly revisions: number;
  readonly changes: number;
  readonly audit: number;
  readonly nodes: number;
  readonly ruleCounters: number;
  readonly ifaceCounters: number;
}

/** Rows of every table a request can write. */
export function storeCounts(url: string): Promise<Counts> {
  return withSql(url, async (sql) => {
    const [r] = await sql<Counts[]>`
      select (select count(*)::int from rules) as rules, (select value from revision_counter) as revision,
             (select count(*)::int from revisions) as revisions, (select count(*)::int from changes) as changes,
             (select count(*)::int from audit_log) as audit, (select count(*)::int from nodes) as nodes,
             (select count(*)::int from node_rule_counters) as "ruleCounters",
             (select count(*)::int from node_interface_counters) as "ifaceCounters"`;
    return r!;
  });
}

export interface HttpReply {
  readonly status: number;
  readonly text: string;
  readonly json: Record<string, any> | undefined;
}

/** One HTTP request with the path sent exactly as given; rejects if the connection closes without an answer. */
export function http(
  cp: TestControlPlane,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' },
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: cp.httpPort, method, path, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let json: Record<string, any> | undefined;
        try {
          json = JSON.parse(text) as Record<string, any>;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** An HTTP error answer: the status, the reason, a message naming `field` (and short), nothing stored. */
export async function httpRejected(
  rig: Rig,
  what: string,
  send: () => Promise<HttpReply>,
  expect: { status: number; reason: string; field: RegExp },
): Promise<HttpReply> {
  const before = await storeCounts(rig.url);
  const r = await send();
  assert.equal(r.status, expect.status, `${what}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
  assert.ok(r.json, `${what}: a JSON error body`);
  assert.equal(r.json.reason, expect.reason, `${what}: reason (${r.json.message})`);
  assert.match(String(r.json.message), expect.field, `${what}: the message names the field`);
  assert.ok(
    String(r.json.message).length < 1000,
    `${what}: the message does not echo the whole input (${String(r.json.message).length} chars)`,
  );
  assert.deepEqual(await storeCounts(rig.url), before, `${what}: nothing stored`);
  return r;
}

/** A gRPC error: the code, the reason, a message naming `field` (and short), nothing stored. */
export async function grpcRejected(
  rig: Rig,
  what: string,
  call: () => Promise<unknown>,
  expect: { code: status; reason: string; field: RegExp },
): Promise<ServiceError> {
  const before = await storeCounts(rig.url);
  const e = await callError(call());
  assert.equal(e.code, expect.code, `${what}: ${status[e.code]} ${e.details}`);
  assert.equal(errorInfoOf(e)?.reason, expect.reason, `${what}: reason (${e.details})`);
  assert.match(e.details, expect.field, `${what}: the message names the field`);
  assert.ok(e.details.length < 1000, `${what}: the message does not echo the whole input (${e.details.length} chars)`);
  assert.deepEqual(await storeCounts(rig.url), before, `${what}: nothing stored`);
  return e;
}

let probe = 0;

/**
 * After a poisoning attempt: a new agent reaches InSync, /healthz,
 * /v1/counters and /v1/nodes answer 200, ListNodes answers.
 */
export async function assertStillServes(rig: Rig, after: string): Promise<void> {
  const agent = new SyncClient(rig.cp.target, { nodeName: `probe-${process.pid}-${++probe}` }).connect();
  try {
    await agent.waitInSync(15_000);
    assert.equal(agent.ended, undefined, `${after}: the probe agent's stream is up`);
  } finally {
    agent.close();
  }
  for (const path of ['/healthz', '/v1/counters', '/v1/nodes']) {
    const r = await http(rig.cp, 'GET', path);
    assert.equal(r.status, 200, `${after}: GET ${path} answers 200, got ${r.status} ${r.text.slice(0, 300)}`);
  }
  await unaryCall(rig.cp.clients.nodes, 'listNodes', ListNodesRequest.fromPartial({}));
}
