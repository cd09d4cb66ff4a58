// Subscribed lists against a local publisher (HTTP on 127.0.0.1, port 0) that
// changes its file between refreshes, followed by a scripted agent that shows
// the exact deltas: the first refresh and every later one arrive as ONE delta
// with only what changed; 304 changes nothing (no revision); a 500, a timeout,
// a half-length file and a file of garbage keep the last good set and say
// why; removing a list removes exactly its rules in one revision; an
// operator's rule for a CIDR the list also names is never removed or taken
// over. A list's rules show `list:NAME` in ListRules, Explain and the audit log.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RefreshOutcome } from '../../proto/gen/fleetwall/v1/list_service.js';
import { Action, Direction } from '../../proto/gen/fleetwall/v1/rule.js';
import { errorInfoOf, startTestControlPlane, type TestControlPlane, unaryCall } from '../support/control-plane.js';
import { startListServer, type ListServer } from '../support/list-server.js';
import { listsApi } from '../support/lists-api.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { rulesApi, storeState, withSql } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

let pg: TestPostgres;
let cp: TestControlPlane;
let url: string;
let srv: ListServer;
let lists: ReturnType<typeof listsApi>;
let rules: ReturnType<typeof rulesApi>;
let agent: SyncClient;
let tmp: string;

const lines = (xs: readonly string[]) => `# a published list\n${xs.map((x) => `${x} ; SBL${x.length}`).join('\n')}\n`;
/** n addresses 198.51.100.x / 203.0.113.x and beyond: documentation and public ranges, never local. */
const addresses = (from: number, n: number) => Array.from({ length: n }, (_, i) => `45.${(from + i) >> 8}.${(from + i) & 255}.7`);

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'fleetwall-lists-'));
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url, {
    listFetchTimeoutMs: 700,
    listMinEveryMs: 1000,
    listPollIntervalMs: 3_600_000,
    listFileRoot: join(tmp, 'lists'),
    protectedCidrs: ['45.200.9.0/24'],
  });
  srv = await startListServer(lines(addresses(0, 40)));
  lists = listsApi(cp.clients.lists, 'test:ops');
  rules = rulesApi(cp.clients.rules, 'test:ops');
  agent = new SyncClient(cp.target, { nodeName: 'lists-agent', labels: { zone: 'a' } }).connect();
  await agent.waitInSync();
});

after(async () => {
  agent?.close();
  await cp?.stop();
  await srv?.close();
  await pg?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The rules of a list, by CIDR -> id. */
async function listRules(name: string): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  let pageToken = '';
  do {
    const page = await rules.list({ pageSize: 1000, pageToken });
    for (const r of page.rules) if (r.source === `list:${name}`) out.set(r.cidr, r.id);
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return out;
}

/** The deltas the agent received for one revision, merged over its parts. */
function deltaOf(revision: bigint): { upserts: string[]; deletes: bigint[] } {
  const parts = agent.deltas.filter((d) => d.delta.revision === revision);
  assert.ok(parts.length > 0, `a delta for revision ${revision}`);
  const upserts = parts.flatMap((p) => p.delta.upserts.map((u) => `${[...u.address].join('.')}/${u.prefixLength}`));
  return { upserts: upserts.sort(), deletes: parts.flatMap((p) => p.delta.deletes).sort() };
}

function revisionsAfter(rev: bigint): bigint[] {
  return [...new Set(agent.deltas.map((d) => d.delta.revision).filter((r) => r > rev))];
}

test('add: one fetch, one revision, one delta with every entry; the rules show list:NAME in ListRules, Explain and the audit log', async () => {
  const start = (await storeState(url)).revision;
  const res = await lists.create({ list: { name: 'drop', url: srv.url, every: { seconds: 3600n } } });
  const l = res.list!;
  assert.equal(l.entries, 40n);
  assert.equal(l.lastRefresh!.outcome, RefreshOutcome.REFRESH_OUTCOME_APPLIED);
  assert.equal(l.lastRefresh!.added, 40n);
  assert.equal(l.lastRefresh!.revision, start + 1n);
  assert.equal(l.etag, '"v1"');
  assert.equal(l.action, Action.ACTION_DENY, 'a list denies unless told otherwise');
  assert.ok(l.nextRefreshTime!.getTime() > Date.now() + 3_500_000);
  await agent.waitRevision(start + 1n);
  assert.deepEqual(revisionsAfter(start), [start + 1n], 'one revision');
  const d = deltaOf(start + 1n);
  assert.deepEqual(
    d.upserts,
    addresses(0, 40)
      .map((a) => `${a}/32`)
      .sort(),
  );
  assert.deepEqual(d.deletes, []);

  const owned = await listRules('drop');
  assert.equal(owned.size, 40);
  const one = (await rules.get(owned.get('45.0.3.7/32')!)).rule!;
  assert.equal(one.source, 'list:drop');
  assert.equal(one.createdBy, 'list:drop');
  assert.equal(one.comment, 'list drop');
  const explained = await unaryCall(cp.clients.explain, 'explain', {
    address: '45.0.3.7',
    nodeName: '',
    direction: Direction.DIRECTION_INGRESS,
  });
  assert.equal(explained.decidingRule!.source, 'list:drop', 'Explain names the list');
  assert.match(explained.explanation, /by rule \d+ \(deny 45\.0\.3\.7\/32, from list:drop\)/);
  await withSql(url, async (sql) => {
    const [a] = await sql<{ actor: string; after: { source: string; added: number } }[]>`
      select actor, after from audit_log where action = 'list.create' order by id desc limit 1`;
    assert.equal(a!.actor, 'local:loopback', 'who added the list: the principal (the local admin on a loopback control plane)');
    assert.deepEqual([a!.after.source, a!.after.added], ['list:drop', 40]);
  });
});

test("the lockout guard holds a deny list's protected entries (a management network): reported per line, never written, the rest applied", async () => {
  const guarded = await startListServer(lines(['45.200.9.7', '45.200.0.0/16', '45.201.0.7']));
  try {
    const res = await lists.create({ list: { name: 'guarded', url: guarded.url, every: { seconds: 3600n } } });
    const r = res.list!.lastRefresh!;
    assert.equal(r.outcome, RefreshOutcome.REFRESH_OUTCOME_APPLIED);
    assert.equal(r.added, 1n, 'only the unprotected entry');
    assert.equal(r.skippedLocal, 2n);
    assert.deepEqual(
      r.skippedLocalLines.map((l) => [l.line, l.reason]),
      [
        ['45.200.9.7/32', 'LOCKOUT_PROTECTED'],
        ['45.200.0.0/16', 'LOCKOUT_PROTECTED'],
      ],
    );
    assert.match(r.skippedLocalLines[0]!.message, /45\.200\.9\.0\/24, which is protected/);
    assert.deepEqual([...(await listRules('guarded')).keys()], ['45.201.0.7/32']);
    await lists.delete('guarded');
  } finally {
    await guarded.close();
  }
});

test('a changed file: only the difference, as one delta; 304 changes nothing and takes no revision', async () => {
  const before = await listRules('drop');
  const start = (await storeState(url)).revision;
  // Two entries go, three come.
  srv.set(lines([...addresses(2, 38), ...addresses(100, 3)]));
  const res = await lists.refresh('drop');
  assert.equal(res.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_APPLIED, res.result!.message);
  assert.deepEqual([res.result!.added, res.result!.removed], [3n, 2n]);
  assert.equal(res.result!.revision, start + 1n);
  assert.equal(res.list!.entries, 41n);
  assert.equal(srv.requests.at(-1)!.ifNoneMatch, '"v1"', 'the fetch was conditional');
  await agent.waitRevision(start + 1n);
  assert.deepEqual(revisionsAfter(start), [start + 1n], 'one revision');
  const d = deltaOf(start + 1n);
  assert.deepEqual(
    d.upserts,
    addresses(100, 3)
      .map((a) => `${a}/32`)
      .sort(),
    'only the new entries',
  );
  assert.deepEqual(d.deletes, [before.get('45.0.0.7/32')!, before.get('45.0.1.7/32')!].sort(), 'only the removed entries');
  const after = await listRules('drop');
  assert.equal(after.get('45.0.5.7/32'), before.get('45.0.5.7/32'), 'unchanged entries keep their rule (and counters)');

  const unchanged = await storeState(url);
  const again = await lists.refresh('drop');
  assert.equal(again.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_NOT_MODIFIED);
  assert.equal(again.result!.httpStatus, 304);
  assert.equal(srv.requests.at(-1)!.status, 304);
  assert.deepEqual(await storeState(url), unchanged, '304: no revision, no rule, no audit row');
});

test('a 500, a timeout, a half-length file and a file of garbage keep the last good set and say why', async () => {
  const good = await listRules('drop');
  const state = await storeState(url);
  srv.fail(500);
  const failed = await lists.refresh('drop');
  assert.equal(failed.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_FETCH_FAILED);
  assert.equal(failed.result!.httpStatus, 500);
  assert.match(failed.result!.message, /HTTP 500.*keeps its 41 rules/);
  assert.equal(failed.list!.lastRefresh!.outcome, RefreshOutcome.REFRESH_OUTCOME_FETCH_FAILED, 'the list says so');
  assert.ok(failed.list!.nextRefreshTime!.getTime() < Date.now() + 11 * 60_000, 'retried sooner than the hourly interval');

  srv.hang();
  const slow = await lists.refresh('drop');
  assert.equal(slow.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_FETCH_FAILED);
  assert.match(slow.result!.message, /no complete answer within 0\.7s/);
  srv.ok();

  const current = [...good.keys()].map((c) => c.replace('/32', ''));
  srv.set(lines(current.slice(0, current.length / 2)));
  const half = await lists.refresh('drop');
  assert.equal(half.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_SHRINK_REFUSED);
  assert.match(half.result!.message, /shrink from 41 to 20 rules, by more than 25%/);

  srv.set(
    `<html><body>\n${Array.from({ length: 30 }, (_, i) => `<p>maintenance ${i}</p>`).join('\n')}\n${current.slice(0, 3).join('\n')}\n</body></html>\n`,
  );
  const garbage = await lists.refresh('drop');
  assert.equal(garbage.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_TOO_MANY_INVALID);
  assert.match(garbage.result!.message, /32 of 35 data lines are invalid, more than 10%/);
  assert.equal(garbage.result!.invalidLines[0]!.lineNumber, 1n, 'with the first invalid lines');

  assert.deepEqual(await listRules('drop'), good, 'the last good set, rule for rule');
  const now = await storeState(url);
  assert.equal(now.revision, state.revision, 'no revision');
  assert.equal(now.rules, state.rules);
  const l = (await lists.get('drop')).list!;
  assert.equal(l.entries, 41n);
  assert.ok(l.lastSuccessTime!.getTime() < l.lastRefresh!.startTime!.getTime(), 'the last success is older than the failure');

  // A list that really shrank: force.
  srv.set(lines(current.slice(0, current.length / 2)));
  const forced = await lists.refresh('drop', true);
  assert.equal(forced.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_APPLIED);
  assert.equal(forced.list!.entries, 20n);
});

test("an operator's rule for a CIDR the list names is never removed or taken over; an update takes a list's rule over", async () => {
  const op = await rules.create({ rule: { cidr: '45.9.9.7/32', action: Action.ACTION_DENY, comment: 'mine' } });
  const broad = await rules.create({ rule: { cidr: '45.9.0.0/16', action: Action.ACTION_DENY, comment: 'mine too' } });
  const owned = [...(await listRules('drop')).keys()].map((c) => c.replace('/32', ''));
  srv.set(lines([...owned, '45.9.9.7', '45.9.9.8']));
  const res = await lists.refresh('drop');
  assert.equal(res.result!.added, 1n, 'only 45.9.9.8 is new to the list');
  assert.equal(res.result!.heldByOtherRules, 1n, "45.9.9.7 is the operator's");
  const mine = (await rules.get(op.rule!.id)).rule!;
  assert.deepEqual([mine.source, mine.createdBy, mine.comment], ['', 'local:loopback', 'mine'], 'not taken over');
  srv.set(lines(owned));
  const dropped = await lists.refresh('drop');
  assert.equal(dropped.result!.removed, 1n, 'only the list’s own 45.9.9.8');
  assert.ok((await rules.get(op.rule!.id)).rule, "the operator's rule survives the list dropping its CIDR");
  assert.ok((await rules.get(broad.rule!.id)).rule, "the operator's overlapping /16 survives");

  // An operator's change takes a list's rule over: the list no longer owns or removes it.
  const [cidr, id] = [...(await listRules('drop')).entries()][0]!;
  const updated = await rules.update({ rule: { id, comment: 'taken over' }, updateMask: ['comment'] });
  assert.equal(updated.rule!.source, '');
  srv.set(lines(owned.filter((a) => `${a}/32` !== cidr)));
  await lists.refresh('drop');
  assert.ok((await rules.get(id)).rule, 'the taken-over rule stays when the list drops its CIDR');
  await rules.delete(id);
});

test('a refresh puts back a list entry whose rule an operator deleted, even when the file did not change', async () => {
  // The refresher remembers the list's rules from its last write (lists/list-memory.ts); a rule
  // deleted since must not be taken as still there.
  const owned = await listRules('drop');
  const file = lines([...owned.keys()].map((c) => c.replace('/32', '')));
  srv.set(file);
  const primed = await lists.refresh('drop');
  assert.equal(primed.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_UNCHANGED, primed.result!.message);
  const [cidr, id] = [...owned.entries()][0]!;
  await rules.delete(id);
  srv.set(file);
  const res = await lists.refresh('drop');
  assert.equal(res.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_APPLIED, res.result!.message);
  assert.deepEqual([res.result!.added, res.result!.removed], [1n, 0n], res.result!.message);
  await agent.waitRevision(res.result!.revision);
  assert.deepEqual(deltaOf(res.result!.revision).upserts, [cidr]);
  assert.equal((await listRules('drop')).size, owned.size);
  srv.set(file);
  const again = await lists.refresh('drop');
  assert.equal(again.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_UNCHANGED, again.result!.message);
});

test('rm removes exactly the list’s rules in one revision (one delta of deletes); other rules stay', async () => {
  const second = await startListServer(lines(addresses(500, 5)));
  try {
    await lists.create({ list: { name: 'other', url: second.url, selector: { zone: 'a' } } });
    const owned = await listRules('drop');
    const others = await listRules('other');
    const before = await storeState(url);
    const res = await lists.delete('drop');
    assert.equal(res.removed, BigInt(owned.size));
    assert.equal(res.revision, before.revision + 1n);
    await agent.waitRevision(res.revision);
    assert.deepEqual(revisionsAfter(before.revision), [res.revision], 'one revision');
    assert.deepEqual(deltaOf(res.revision).deletes, [...owned.values()].sort(), 'exactly the list’s rules');
    assert.equal((await listRules('drop')).size, 0);
    assert.deepEqual(await listRules('other'), others, 'another list keeps its rules');
    assert.equal((await storeState(url)).rules, before.rules - owned.size);
    const gone = await lists.get('drop').catch((e) => e);
    assert.equal(errorInfoOf(gone)?.reason, 'LIST_NOT_FOUND');
    await withSql(url, async (sql) => {
      const [a] = await sql<{ actor: string; after: { removed: number } }[]>`
        select actor, after from audit_log where action = 'list.delete' order by id desc limit 1`;
      assert.deepEqual([a!.actor, a!.after.removed], ['local:loopback', owned.size]);
    });
    await lists.delete('other');
  } finally {
    await second.close();
  }
});

test('bad input is a clear error and stores nothing: unknown format, a missing column, every 0, an unsupported scheme, a bad name', async () => {
  const csv = await startListServer('ipAddress,score\n"45.1.1.1",100\n', '/list.csv');
  try {
    const before = await storeState(url);
    const cases: Array<[Parameters<typeof lists.create>[0], string, RegExp]> = [
      [{ list: { name: 'x', url: srv.url, format: 99 as never } }, 'INVALID_ENUM', /list\.format 99/],
      [{ list: { name: 'x', url: csv.url, column: 'ip_addr' } }, 'UNKNOWN_COLUMN', /ip_addr.*ipAddress/],
      [{ list: { name: 'x', url: srv.url, every: { seconds: 0n } } }, 'INVALID_LIST_INTERVAL', /too short/],
      [{ list: { name: 'x', url: 'ftp://127.0.0.1/list.txt' } }, 'INVALID_LIST_SOURCE', /scheme "ftp" is not supported/],
      [{ list: { name: 'x', url: 'gopher://x/' } }, 'INVALID_LIST_SOURCE', /not supported/],
      [{ list: { name: 'x', url: 'http://user:pw@127.0.0.1/' } }, 'INVALID_LIST_SOURCE', /credentials/],
      [{ list: { name: 'x', url: '' } }, 'INVALID_LIST_SOURCE', /a source is required/],
      [{ list: { name: 'x', url: `http://127.0.0.1/${'a'.repeat(2100)}` } }, 'INVALID_LIST_SOURCE', /at most 2048/],
      [{ list: { name: 'Bad Name', url: srv.url } }, 'INVALID_LIST_NAME', /not a list name/],
      [{ list: { name: 'x', url: srv.url, format: 1, column: 'ip' } }, 'INVALID_FORMAT_OPTION', /column/],
      [{ list: { name: 'x', url: `${srv.url}.missing` } }, 'LIST_FETCH_FAILED', /HTTP 404.*nothing was stored/],
      [
        { list: { name: 'x', url: 'file:///etc/hostname' } },
        'INVALID_LIST_SOURCE',
        /\/etc\/hostname is outside .*FLEETWALL_LIST_FILE_ROOT/,
      ],
      [{ list: { name: 'x', url: 'file://other-host/x.txt' } }, 'INVALID_LIST_SOURCE', /another host/],
    ];
    for (const [req, reason, message] of cases) {
      const err = await lists.create(req).then(
        () => assert.fail(`${reason}: expected an error`),
        (e) => e,
      );
      assert.equal(errorInfoOf(err)?.reason, reason, err.details);
      assert.match(err.details, message);
    }
    assert.deepEqual(await storeState(url), before, 'no rule, revision or audit row');
    assert.equal((await lists.list()).lists.filter((l) => l.name === 'x').length, 0, 'no list');
    // The column exists: fine.
    const ok = await lists.create({ list: { name: 'csv', url: csv.url, column: 'ipAddress' } });
    assert.equal(ok.list!.entries, 1n);
    await lists.delete('csv');
  } finally {
    await csv.close();
  }
});

test('a file source is read on the control plane host, inside its FLEETWALL_LIST_FILE_ROOT; unchanged size and time is not modified', async () => {
  mkdirSync(join(tmp, 'lists'), { recursive: true });
  const file = join(tmp, 'lists', 'list.txt');
  writeFileSync(file, lines(addresses(700, 4)));
  const res = await lists.create({ list: { name: 'file-list', url: pathToFileURL(file).href } });
  assert.equal(res.list!.entries, 4n);
  assert.equal(res.list!.lastRefresh!.httpStatus, 0);
  const same = await lists.refresh('file-list');
  assert.equal(same.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_NOT_MODIFIED);
  writeFileSync(file, lines(addresses(700, 5)));
  utimesSync(file, new Date(), new Date(Date.now() + 5000));
  const changed = await lists.refresh('file-list');
  assert.equal(changed.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_APPLIED);
  assert.equal(changed.result!.added, 1n);
  rmSync(file);
  const missing = await lists.refresh('file-list');
  assert.equal(missing.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_FETCH_FAILED);
  assert.match(missing.result!.message, /on the control plane's host.*ENOENT/);
  // A symbolic link put in its place does not lead out of the root.
  symlinkSync('/etc/hostname', file);
  const escaped = await lists.refresh('file-list');
  assert.equal(escaped.result!.outcome, RefreshOutcome.REFRESH_OUTCOME_FETCH_FAILED);
  assert.match(escaped.result!.message, /is not inside FLEETWALL_LIST_FILE_ROOT/);
  assert.equal(escaped.list!.entries, 5n, 'the last good set');
  await lists.delete('file-list');
});

test('the same over HTTP/JSON: POST, GET, refresh, DELETE /v1/lists; bad input is a 4xx and stores nothing', async () => {
  const base = `http://127.0.0.1:${cp.httpPort}`;
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { 'content-type': 'application/json', 'x-fleetwall-actor': 'test:http' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const pub = await startListServer('45.200.0.1\n45.200.0.2\n');
  try {
    const before = await storeState(url);
    for (const [body, reason] of [
      [{ list: { name: 'web', url: pub.url, format: 'xml' } }, 'INVALID_ENUM'],
      [{ list: { name: 'web', url: pub.url, every: '0s' } }, 'INVALID_LIST_INTERVAL'],
      [{ list: { name: 'web', url: 'ftp://127.0.0.1/x' } }, 'INVALID_LIST_SOURCE'],
      [{ list: { name: 'web', url: pub.url, action: 'ACTION_NOPE' } }, 'INVALID_ENUM'],
    ] as const) {
      const r = await call('POST', '/v1/lists', body);
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.reason, reason);
    }
    assert.deepEqual(await storeState(url), before, 'nothing stored');
    const created = await call('POST', '/v1/lists', {
      name: 'web',
      url: pub.url,
      every: '7200s',
      format: 'plain',
      selector: { zone: 'a' },
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.equal(created.body.list.entries, '2');
    assert.deepEqual(created.body.list.every, { seconds: '7200' }, 'ts-proto writes a Duration as an object');
    assert.equal(created.body.list.format, 'BLOCKLIST_FORMAT_PLAIN');
    assert.equal(created.body.list.lastRefresh.outcome, 'REFRESH_OUTCOME_APPLIED');
    const all = await call('GET', '/v1/lists');
    assert.ok(all.body.lists.some((l: { name: string }) => l.name === 'web'));
    assert.equal((await call('GET', '/v1/lists/web')).body.list.url, pub.url);
    assert.equal((await call('GET', '/v1/lists/nope')).status, 404);
    pub.set('45.200.0.1\n');
    const refreshed = await call('POST', '/v1/lists/web/refresh');
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.equal(refreshed.body.result.outcome, 'REFRESH_OUTCOME_SHRINK_REFUSED', 'half of a two-entry list');
    const forced = await call('POST', '/v1/lists/web/refresh?force=true');
    assert.equal(forced.body.result.outcome, 'REFRESH_OUTCOME_APPLIED');
    assert.equal(forced.body.list.entries, '1');
    const removed = await call('DELETE', '/v1/lists/web');
    assert.equal(removed.status, 200);
    assert.equal(removed.body.removed, '1');
  } finally {
    await pub.close();
  }
});

test('the metrics: refresh times, outcomes per list, entries per list', async () => {
  const text = await (await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`)).text();
  assert.match(text, /fleetwall_list_refresh_total\{list="drop",outcome="applied",control_plane="[^"]+"\} [1-9]/);
  assert.match(text, /fleetwall_list_refresh_total\{list="drop",outcome="fetch_failed",control_plane="[^"]+"\} 2/);
  assert.match(text, /fleetwall_list_refresh_total\{list="drop",outcome="not_modified",control_plane="[^"]+"\} 1/);
  assert.match(text, /fleetwall_list_refresh_total\{list="drop",outcome="shrink_refused",control_plane="[^"]+"\} 1/);
  assert.match(text, /fleetwall_list_refresh_seconds_count\{control_plane="[^"]+"\} [1-9]/);
  assert.doesNotMatch(text, /fleetwall_list_entries\{list="drop"/, 'a removed list has no entries series');
});
