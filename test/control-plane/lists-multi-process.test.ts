// Two control-plane processes (this one and a child) on one database, both
// looking for due lists every 100 ms, and a slow publisher: a due list is
// fetched and applied exactly once per due time, never by both and never two
// fetches at once; a refresh asked of both at the same moment runs once (the
// other answers LIST_BUSY); each change of the file is one revision.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { RefreshOutcome, type RuleList } from '../../proto/gen/fleetwall/v1/list_service.js';
import {
  type ChildControlPlane,
  connectClients,
  errorInfoOf,
  startChildControlPlane,
  startTestControlPlane,
  type TestClients,
  type TestControlPlane,
} from '../support/control-plane.js';
import { eventually } from '../support/eventually.js';
import { startListServer, type ListServer } from '../support/list-server.js';
import { listsApi } from '../support/lists-api.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { withSql } from '../support/rule-fixtures.js';

let pg: TestPostgres;
let url: string;
let a: TestControlPlane;
let child: ChildControlPlane;
let bClients: TestClients;
let srv: ListServer;

const body = (n: number) => `${Array.from({ length: n }, (_, i) => `45.77.${i}.1`).join('\n')}\n`;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  a = await startTestControlPlane(url, { controlPlaneId: 'cp-a', listPollIntervalMs: 100, listMinEveryMs: 500 });
  child = await startChildControlPlane(url, {
    FLEETWALL_CONTROL_PLANE_ID: 'cp-b',
    FLEETWALL_LIST_POLL_INTERVAL: '100ms',
    FLEETWALL_LIST_MIN_EVERY: '500ms',
    FLEETWALL_LOG_LEVEL: 'warn',
  });
  bClients = connectClients(child.target);
  srv = await startListServer(body(10));
});

after(async () => {
  bClients?.close();
  await a?.stop();
  await child?.kill();
  await srv?.close();
  await pg?.stop();
});

async function refreshCounts(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^fleetwall_list_refresh_total\{list="shared"[^}]*\} (\d+)/gm)) n += Number(m[1]);
  return n;
}

test('a due list is refreshed once per due time by one of the two processes, never twice, never two fetches at once', async () => {
  srv.delay(300);
  const created = await listsApi(a.clients.lists).create({ list: { name: 'shared', url: srv.url, every: { seconds: 3600n } } });
  assert.equal(created.list!.entries, 10n);
  const refreshedBy = new Set<string>();
  for (let round = 1; round <= 4; round++) {
    srv.set(body(10 + round));
    const requestsBefore = srv.requests.length;
    const roundStart = new Date();
    // Due now, for both processes' schedulers.
    await withSql(url, (sql) => sql`update lists set next_run = now() where name = 'shared'`);
    const l = (await eventually(async () => {
      const got = (await listsApi(a.clients.lists).get('shared')).list!;
      const r = got.lastRefresh!;
      return r.startTime!.getTime() >= roundStart.getTime() - 5 && got.nextRefreshTime!.getTime() > Date.now() + 1_800_000 ? got : false;
    }, `round ${round}'s refresh`)) as RuleList;
    assert.equal(l.lastRefresh!.outcome, RefreshOutcome.REFRESH_OUTCOME_APPLIED, l.lastRefresh!.message);
    assert.equal(l.entries, BigInt(10 + round));
    refreshedBy.add(l.lastRefresh!.controlPlaneId);
    // Both schedulers poll every 100 ms: give each several more looks at the list.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(srv.requests.length - requestsBefore, 1, `round ${round}: one fetch, by ${l.lastRefresh!.controlPlaneId}`);
  }
  assert.equal(srv.maxInFlight, 1, 'never two fetches of the list at once');
  const runs = (await refreshCounts(a.httpPort)) + (await refreshCounts(child.httpPort));
  assert.equal(runs, srv.requests.length, 'every fetch is one refresh of one process');
  for (const id of refreshedBy) assert.ok(['cp-a', 'cp-b'].includes(id), id);
  await withSql(url, async (sql) => {
    const rows = await sql<{ n: number }[]>`select count(*)::int as n from revisions where kind = 'list_refresh'`;
    assert.equal(rows[0]!.n, 4, 'one revision per change of the file');
  });
});

test('a refresh asked of both processes at once runs once; the other answers LIST_BUSY', async () => {
  srv.delay(600);
  srv.set(body(20));
  const before = srv.requests.length;
  const results = await Promise.allSettled([listsApi(a.clients.lists).refresh('shared'), listsApi(bClients.lists).refresh('shared')]);
  const ok = results.filter((r) => r.status === 'fulfilled');
  const busy = results.filter((r) => r.status === 'rejected');
  assert.equal(ok.length, 1, 'one refresh ran');
  assert.equal(busy.length, 1);
  const err = (busy[0] as PromiseRejectedResult).reason;
  assert.equal(errorInfoOf(err)?.reason, 'LIST_BUSY');
  assert.match(err.details, /a refresh of list shared is running/);
  assert.equal(srv.requests.length - before, 1, 'one fetch');
  assert.equal((ok[0] as PromiseFulfilledResult<Awaited<ReturnType<ReturnType<typeof listsApi>['refresh']>>>).value.list!.entries, 20n);
});

test("each process diffs against the list's rules as they are, whichever process wrote them last", async () => {
  // Each process remembers the rules of its own last write (lists/list-memory.ts). Here the other
  // process swaps one entry for another (same count), then this one is given the first file again:
  // it must see the other's write, put the first entry back and take the second out.
  srv.delay(0);
  const mine = listsApi(a.clients.lists);
  const theirs = listsApi(bClients.lists);
  const first = (n: number) => Array.from({ length: n }, (_, i) => `45.77.${i}.1`);
  srv.set(`${first(20).join('\n')}\n`);
  await mine.refresh('shared', true);
  srv.set(`${[...first(19), '45.78.0.1'].join('\n')}\n`);
  const swapped = await theirs.refresh('shared');
  assert.deepEqual([swapped.result!.added, swapped.result!.removed], [1n, 1n], swapped.result!.message);
  srv.set(`${first(20).join('\n')}\n`);
  const back = await mine.refresh('shared');
  assert.equal(back.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_APPLIED, back.result!.message);
  assert.deepEqual([back.result!.added, back.result!.removed], [1n, 1n], back.result!.message);
  await withSql(url, async (sql) => {
    const rows = await sql<{ cidr: string }[]>`
      select cidr::text as cidr from rules where list_id = (select id from lists where name = 'shared')`;
    assert.deepEqual(
      rows.map((r) => r.cidr).sort(),
      first(20)
        .map((a) => `${a}/32`)
        .sort(),
    );
  });
});
