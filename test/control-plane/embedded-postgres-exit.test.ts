// The embedded Postgres's process group and its end: with processGroup 'own'
// the server is out of reach of a signal to our group (a terminal's Ctrl-C)
// and is stopped by us; 'inherit' keeps it in ours. A server that dies under
// us is reported once (onUnexpectedExit, with its exit code or signal), and stop() then
// returns instead of waiting for an exit that already happened.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import postgres from 'postgres';
import { type PostgresExit, startEmbeddedPostgres } from '../../control-plane/src/store/embedded-postgres.js';
import { eventually } from '../support/eventually.js';

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetwall-pgexit-'));
  chmodSync(dir, 0o755);
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function postmasterPid(): number {
  return Number(readFileSync(join(dir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

/** Process group of a pid (/proc/PID/stat field 5, after the parenthesised command name). */
function pgidOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const logger = pino({ level: 'silent' });

test("processGroup 'own' puts the server in a group of its own; 'inherit' in ours", { timeout: 60_000 }, async () => {
  const ownPgid = pgidOf(process.pid);
  const own = await startEmbeddedPostgres({ dataDir: dir, port: 0, logger, processGroup: 'own' });
  try {
    const pid = postmasterPid();
    assert.equal(pgidOf(pid), pid, 'the postmaster leads its own process group');
    assert.notEqual(pgidOf(pid), ownPgid);
  } finally {
    await own.stop();
  }
  const inherit = await startEmbeddedPostgres({ dataDir: dir, port: 0, logger, processGroup: 'inherit' });
  try {
    assert.equal(pgidOf(postmasterPid()), ownPgid, 'the postmaster is in our process group');
  } finally {
    await inherit.stop();
  }
});

test('a server that dies under us is reported, and stop() still returns', { timeout: 60_000 }, async () => {
  const exits: PostgresExit[] = [];
  const pg = await startEmbeddedPostgres({ dataDir: dir, port: 0, logger, processGroup: 'own', onUnexpectedExit: (e) => exits.push(e) });
  const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
  try {
    assert.deepEqual([...(await sql`select 1 as one`)], [{ one: 1 }]);
    const pid = postmasterPid();
    process.kill(pid, 'SIGINT'); // what a terminal's Ctrl-C did to it: a fast shutdown
    await eventually(() => exits.length > 0, 'the unexpected exit to be reported');
    assert.deepEqual([...exits], [{ code: 0, signal: null }]);
    assert.ok(!alive(pid));
    await pg.stop(); // returns (it waited forever for an 'exit' that had already fired)
    assert.equal(exits.length, 1, 'reported once; stop() of a dead server is not an unexpected exit');
  } finally {
    await sql.end({ timeout: 1 }).catch(() => undefined);
  }
  // A server stopped by stop() is not reported.
  const again = await startEmbeddedPostgres({ dataDir: dir, port: 0, logger, onUnexpectedExit: (e) => exits.push(e) });
  await again.stop();
  assert.equal(exits.length, 1);
});
