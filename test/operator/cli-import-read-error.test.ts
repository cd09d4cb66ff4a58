// `fleetwall import` when reading its input fails (issue 16, finding 2): the
// CLI cancels the stream - never half-closes it - and tells the user the
// import failed and that nothing was stored, and the store has no rule of
// it. A real CLI process against a real control plane: a directory (the read
// fails at once) and stdin a TCP socket reset by its peer after more lines
// than one chunk (8,192) were read and sent (the read fails mid-way); the
// same lines ending normally are imported, so the count is no accident.
import { type CliRun, runCli } from '../support/cli.js';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { eventually } from '../support/eventually.js';
import { withSql } from '../support/rule-fixtures.js';

let pg: TestPostgres;
let url: string;
let cp: TestControlPlane;
let tmp: string;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  cp = await startTestControlPlane(url);
  tmp = mkdtempSync(join(tmpdir(), 'fleetwall-cli-read-'));
});

after(async () => {
  await cp?.stop();
  await pg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

/** The CLI with `stdin` as its fd 0 ('ignore': /dev/null). */
function fw(args: string[], stdin: Socket | 'ignore' = 'ignore'): Promise<CliRun> {
  return runCli(cp.target, args, { stdin });
}

const ruleCount = () => withSql(url, async (sql) => (await sql<{ n: number }[]>`select count(*)::int as n from rules`)[0]!.n);

/** The loopback connection's queues from /proc/net/tcp (this network namespace): bytes unsent and unread. */
function tcpQueues(localPort: number, remotePort: number): { tx: number; rx: number } | undefined {
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex(localPort)}`) && f[2]?.endsWith(`:${hex(remotePort)}`)) {
      const [tx, rx] = f[4]!.split(':').map((x) => Number.parseInt(x, 16)) as [number, number];
      return { tx, rx };
    }
  }
  return undefined;
}

/** A connected loopback TCP pair: `near` stays here, `far` becomes the CLI's stdin. */
async function socketPair(): Promise<{ near: Socket; far: Socket; close(): void }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const near = connect((server.address() as { port: number }).port, '127.0.0.1');
  near.on('error', () => undefined);
  const far = await accepted;
  server.close();
  return { near, far, close: () => near.destroy() };
}

/** 9,000 distinct addresses, one a line: more than one chunk. */
const LINES = `${Array.from({ length: 9000 }, (_, i) => `45.77.${i >> 8}.${(i & 255) + 0}`).join('\n')}\n`;

test('import of a directory: the read fails, exit 2, the message says what failed and that nothing was stored; no rule added', async () => {
  const dir = join(tmp, 'a-directory');
  mkdirSync(dir);
  const before = await ruleCount();
  const r = await fw(['import', dir]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`reading ${dir} failed: .*EISDIR.*; the import was cancelled and nothing was stored`));
  const j = await fw(['import', dir, '--json']);
  assert.equal(j.code, 2);
  assert.equal(JSON.parse(j.stderr).error.reason, 'FILE_NOT_READABLE');
  assert.equal(await ruleCount(), before, 'no rule of the failed imports');
});

test('import from stdin reset mid-way after a whole chunk was read: exit 2, "nothing was stored", no rule added; the same lines ending normally are imported', async () => {
  const before = await ruleCount();
  const pair = await socketPair();
  try {
    const run = fw(['import', '-', '--comment', 'reset mid-way'], pair.far);
    pair.far.destroy(); // the CLI holds its own descriptor
    await new Promise<void>((r) => pair.near.write(LINES, () => r()));
    // The CLI has read every line (nothing unsent here, nothing unread there): the first chunk went to the server.
    const near = { local: pair.near.localPort!, remote: pair.near.remotePort! };
    await eventually(() => {
      const mine = tcpQueues(near.local, near.remote);
      const theirs = tcpQueues(near.remote, near.local);
      return mine?.tx === 0 && theirs?.rx === 0;
    }, 'the CLI has read all the lines');
    pair.near.resetAndDestroy();
    const r = await run;
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /reading stdin failed: .*ECONNRESET.*; the import was cancelled and nothing was stored/);
  } finally {
    pair.close();
  }
  // The server never saw the stream end: no rule of it, now or later.
  assert.equal(await ruleCount(), before, 'no rule of the failed import');
  const committed = await withSql(url, async (sql) => (await sql`select 1 from rules where comment = 'reset mid-way'`).length);
  assert.equal(committed, 0);

  // The same lines, the stream ending normally: all imported.
  const ok = await socketPair();
  try {
    const run = fw(['import', '-', '--comment', 'ended normally', '--json'], ok.far);
    ok.far.destroy();
    ok.near.end(LINES);
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).added, '9000');
  } finally {
    ok.close();
  }
  assert.equal(await ruleCount(), before + 9000);
});
