// Hostile imports (issue 16, findings 2, 3 and 5): a cancelled or broken
// ImportRules stream stores nothing (and the server does not log "import
// committed"); idle imports hold no connection, transaction or lock, so with
// ten of them open (and one that sent 4,096 lines and stalled) /healthz, a
// CreateRule and /manage-ip of an address the stalled import holds each
// answer within a second; concurrent imports are bounded
// (RESOURCE_EXHAUSTED TOO_MANY_IMPORTS); an idle or overlong stream ends
// (DEADLINE_EXCEEDED IMPORT_TIMEOUT); an import over its byte limit is
// refused. Nothing of any of them is stored.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ClientWritableStream, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { Action } from '../../../proto/gen/fleetwall/v1/rule.js';
import { CreateRuleRequest, ImportRulesRequest, type ImportRulesResponse } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { captureLogs, errorInfoOf, type TestControlPlane } from '../../support/control-plane.js';
import { startTestPostgres, type TestPostgres } from '../../support/postgres.js';
import { eventually } from '../../support/eventually.js';
import { withSql } from '../../support/rule-fixtures.js';
import { assertStillServes, type Counts, grpcRejected, http, type Rig, startRig, storeCounts } from './rig.js';

let pg: TestPostgres;

before(async () => {
  pg = await startTestPostgres();
});

after(async () => {
  await pg?.stop();
});

interface OpenImport {
  readonly call: ClientWritableStream<ImportRulesRequest>;
  readonly done: Promise<ImportRulesResponse>;
  lines(lines: string[]): void;
}

function openImport(cp: TestControlPlane): OpenImport {
  let call!: ClientWritableStream<ImportRulesRequest>;
  const done = new Promise<ImportRulesResponse>((resolve, reject) => {
    call = cp.clients.rules.importRules(new Metadata(), (err: ServiceError | null, res?: ImportRulesResponse) =>
      err ? reject(err) : resolve(res!),
    );
  });
  done.catch(() => undefined);
  call.on('error', () => undefined);
  call.write(ImportRulesRequest.fromPartial({ part: { $case: 'header', value: { action: Action.ACTION_DENY, comment: 'hostile' } } }));
  return {
    call,
    done,
    lines: (lines) => call.write(ImportRulesRequest.fromPartial({ part: { $case: 'chunk', value: { lines } } })),
  };
}

function lines(n: number, base: number): string[] {
  return Array.from({ length: n }, (_, i) => `45.${base}.${(i >> 8) & 255}.${i & 255}`);
}

/** What an import could write (the probe agent of assertStillServes adds a node). */
function ruleTables(c: Counts) {
  return { rules: c.rules, revision: c.revision, revisions: c.revisions, changes: c.changes, audit: c.audit };
}

async function callFails(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as ServiceError;
  }
  throw new Error('the import succeeded');
}

describe('a cancelled or broken stream stores nothing', () => {
  let rig: Rig;
  const logs = captureLogs();
  before(async () => {
    rig = await startRig({}, { pg, logger: logs.logger });
  });
  after(() => rig?.stop());

  test('cancel after 4,096 lines: CANCELLED, nothing stored, no "import committed"', async () => {
    const before = await storeCounts(rig.url);
    const imp = openImport(rig.cp);
    imp.lines(lines(4096, 1));
    imp.lines(lines(10, 2));
    // The server has read the lines (they are parsed as they arrive).
    await new Promise((r) => setTimeout(r, 300));
    imp.call.cancel();
    const e = await callFails(imp.done);
    assert.equal(e.code, status.CANCELLED);
    // Anything the server would do after the cancel has happened by the time a later call is answered.
    await assertStillServes(rig, 'a cancelled import');
    assert.deepEqual(ruleTables(await storeCounts(rig.url)), ruleTables(before), 'nothing stored');
    assert.equal(logs.lines.filter((l) => l.msg === 'import committed').length, 0, 'no "import committed" in the log');
  });

  test('the client goes away (channel closed) mid-stream: nothing stored', async () => {
    const before = await storeCounts(rig.url);
    const imp = openImport(rig.cp);
    imp.lines(lines(5000, 3));
    await new Promise((r) => setTimeout(r, 300));
    rig.cp.clients.rules.close();
    await callFails(imp.done);
    await assertStillServes(rig, 'a broken import');
    assert.deepEqual(ruleTables(await storeCounts(rig.url)), ruleTables(before), 'nothing stored');
    assert.equal(logs.lines.filter((l) => l.msg === 'import committed').length, 0);
  });
});

describe('idle imports hold nothing in the database', () => {
  let rig: Rig;
  before(async () => {
    // Room for all eleven; a pool of 3 connections the imports would have exhausted.
    rig = await startRig({ maxConcurrentImports: 11, dbPoolSize: 3, dbReadPoolSize: 1 }, { pg });
  });
  after(() => rig?.stop());

  test('with ten idle imports and one stalled after 4,096 lines, /healthz, CreateRule and /manage-ip answer within a second', async () => {
    const before = await storeCounts(rig.url);
    const idle = Array.from({ length: 10 }, () => openImport(rig.cp));
    const stalled = openImport(rig.cp);
    const sent = lines(4096, 9);
    stalled.lines(sent);
    await new Promise((r) => setTimeout(r, 500));
    const sessions = await withSql(
      rig.url,
      (sql) =>
        sql<
          { n: number }[]
        >`select count(*)::int as n from pg_stat_activity where state like 'idle in transaction%' or query ilike 'copy%'`,
    );
    assert.equal(sessions[0]!.n, 0, 'no import holds a transaction or a COPY');

    const health = await http(rig.cp, 'GET', '/healthz');
    assert.equal(health.status, 200, health.text);
    const created = await new Promise<unknown>((resolve, reject) =>
      rig.cp.clients.rules.createRule(
        CreateRuleRequest.fromPartial({ rule: { cidr: '203.0.113.5/32', action: Action.ACTION_DENY } }),
        new Metadata(),
        { deadline: Date.now() + 1000 },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
    assert.ok(created);
    const res = await fetch(`http://127.0.0.1:${rig.cp.httpPort}/manage-ip`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ action: 'block', ip: sent[7] }),
      signal: AbortSignal.timeout(1000),
    });
    assert.equal(res.status, 200, await res.text());

    for (const i of [...idle, stalled]) i.call.cancel();
    await Promise.all([...idle, stalled].map((i) => callFails(i.done)));
    const after = await storeCounts(rig.url);
    assert.equal(after.rules, before.rules + 2, 'the create and the block; nothing of the imports');
    await assertStillServes(rig, 'idle imports');
  });
});

describe('bounds', () => {
  let rig: Rig;
  before(async () => {
    rig = await startRig({ maxConcurrentImports: 2, importIdleTimeoutMs: 400, importTimeoutMs: 1500, maxImportBytes: 8192 }, { pg });
  });
  after(() => rig?.stop());

  test('a third concurrent import: RESOURCE_EXHAUSTED TOO_MANY_IMPORTS naming the setting', async () => {
    const a = openImport(rig.cp);
    const b = openImport(rig.cp);
    await new Promise((r) => setTimeout(r, 100));
    await grpcRejected(rig, 'third import', () => rig.api.import({ action: Action.ACTION_DENY }, [['192.0.2.1']]), {
      code: status.RESOURCE_EXHAUSTED,
      reason: 'TOO_MANY_IMPORTS',
      field: /FLEETWALL_MAX_CONCURRENT_IMPORTS/,
    });
    a.call.cancel();
    b.call.cancel();
    await Promise.all([callFails(a.done), callFails(b.done)]);
    // The slots are free again once the server has seen the cancels.
    const ok = await eventually(() => rig.api.import({ action: Action.ACTION_DENY, comment: 'after' }, [['192.0.2.1']]), 'a free slot');
    assert.equal(ok.added, 1n);
  });

  test('a stream idle past FLEETWALL_IMPORT_IDLE_TIMEOUT: DEADLINE_EXCEEDED IMPORT_TIMEOUT, nothing stored', async () => {
    const before = await storeCounts(rig.url);
    const imp = openImport(rig.cp);
    imp.lines(['198.51.100.1']);
    const e = await callFails(imp.done);
    assert.equal(e.code, status.DEADLINE_EXCEEDED, e.details);
    assert.equal(errorInfoOf(e)?.reason, 'IMPORT_TIMEOUT');
    assert.match(e.details, /FLEETWALL_IMPORT_IDLE_TIMEOUT/);
    imp.call.cancel();
    assert.deepEqual(await storeCounts(rig.url), before);
    await assertStillServes(rig, 'an idle import');
  });

  test('a stream that trickles past FLEETWALL_IMPORT_TIMEOUT: IMPORT_TIMEOUT, nothing stored', async () => {
    const before = await storeCounts(rig.url);
    const imp = openImport(rig.cp);
    const t = setInterval(() => imp.lines(['198.51.100.2']), 200);
    try {
      const e = await callFails(imp.done);
      assert.equal(errorInfoOf(e)?.reason, 'IMPORT_TIMEOUT', e.details);
      assert.match(e.details, /FLEETWALL_IMPORT_TIMEOUT/);
    } finally {
      clearInterval(t);
      imp.call.cancel();
    }
    assert.deepEqual(await storeCounts(rig.url), before);
  });

  test('an import over FLEETWALL_MAX_IMPORT_BYTES: MESSAGE_TOO_LARGE, nothing stored', async () => {
    await grpcRejected(rig, 'bytes', () => rig.api.import({ action: Action.ACTION_DENY }, [lines(400, 4), lines(400, 5)]), {
      code: status.RESOURCE_EXHAUSTED,
      reason: 'MESSAGE_TOO_LARGE',
      field: /FLEETWALL_MAX_IMPORT_BYTES/,
    });
    await grpcRejected(rig, 'NUL in a line', () => rig.api.import({ action: Action.ACTION_DENY }, [['192.0.2.50\u0000']]), {
      code: status.INVALID_ARGUMENT,
      reason: 'INVALID_FIELD',
      field: /chunk\.lines\[0\]/,
    });
    await grpcRejected(rig, 'a 10 KB line', () => rig.api.import({ action: Action.ACTION_DENY }, [['1'.repeat(5000)]]), {
      code: status.INVALID_ARGUMENT,
      reason: 'INVALID_FIELD',
      field: /chunk\.lines\[0\]/,
    });
    await eventually(async () => (await http(rig.cp, 'GET', '/healthz')).status === 200, 'healthz');
  });
});
