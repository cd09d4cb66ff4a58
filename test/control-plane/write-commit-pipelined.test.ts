// Issue 18, "operators stay fast while bans pour in": every rule write takes
// the revision counter's row lock last and holds it to its COMMIT
// (write-transaction.ts). The ban writer's transaction used to get its bump's
// result back before it sent the COMMIT: the lock stayed held for a round
// trip and a turn of the control plane's event loop (traced under attack:
// 194-199 ms), and an operator's create, which needs the same lock, waited
// for it. Now the COMMIT goes with the bump.
//
// The property, without a clock: a proxy between the writer and Postgres
// forwards the client's bytes until the packet that carries the bump, then
// holds everything the client sends after it. A transaction whose COMMIT
// left with its bump is committed while the proxy holds (another connection
// sees its revision); one that sends its COMMIT after the bump's result is
// not, until the proxy lets go.
import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import pino from 'pino';
import type { Sql } from 'postgres';
import { connect } from '../../control-plane/src/store/database.js';
import { migrate } from '../../control-plane/src/store/migrations.js';
import { writeTransaction } from '../../control-plane/src/store/write-transaction.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';

const log = pino({ level: 'silent' });
let pg: TestPostgres;
let url: string;
let direct: Sql;

before(async () => {
  pg = await startTestPostgres();
  url = await pg.newDatabase();
  direct = connect(url, { max: 2, applicationName: 'test direct', logger: log });
  await migrate(direct, log);
});

after(async () => {
  await direct?.end();
  await pg?.stop();
});

/** A TCP proxy to Postgres that holds the client's bytes after the first packet carrying `marker`, until `release()`. */
async function holdingProxy(
  target: URL,
  marker: string,
): Promise<{ url: string; held: () => number; release: () => void; close: () => void }> {
  let gateClosed = false;
  const waiting: (() => void)[] = [];
  let heldBytes = 0;
  const sockets: Socket[] = [];
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    sockets.push(client, upstream);
    upstream.on('data', (d) => client.write(d));
    client.on('data', (d: Buffer) => {
      if (gateClosed) {
        heldBytes += d.length;
        waiting.push(() => upstream.write(d));
        return;
      }
      upstream.write(d);
      if (d.includes(marker)) gateClosed = true;
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  const u = new URL(target.href);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return {
    url: u.href,
    held: () => heldBytes,
    release() {
      gateClosed = false;
      for (const w of waiting.splice(0)) w();
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

test("a write transaction's COMMIT leaves with its revision bump: committed while everything the writer sends after the bump is held", async () => {
  const proxy = await holdingProxy(new URL(url), 'revision_counter');
  const writer = connect(proxy.url, { max: 1, applicationName: 'test writer', logger: log });
  try {
    const [before] = await direct<{ value: bigint }[]>`select value from revision_counter where id = 1`;
    const done = writeTransaction(writer, 'test:pipelined', 'ban', async () => ({ value: 'ok', changes: 1 }));
    // Another connection looks for the revision while the proxy holds the writer's later bytes (at most 10 s).
    let committed = false;
    for (let i = 0; i < 200 && !committed; i++) {
      const rows = await direct`select 1 from revisions where actor = 'test:pipelined'`;
      committed = rows.length === 1;
      if (!committed) await new Promise((r) => setTimeout(r, 50));
    }
    const heldWhileLooking = proxy.held();
    proxy.release();
    const res = await done;
    assert.ok(committed, `the revision was not committed while the writer's bytes after its bump were held (${heldWhileLooking} B held)`);
    assert.equal(res.revision, before!.value + 1n, 'one revision, the next');
    const [lock] = await direct<{ n: number }[]>`
      select count(*)::int as n from pg_locks l join pg_class c on c.oid = l.relation where c.relname = 'revision_counter' and l.granted and l.mode = 'RowExclusiveLock'`;
    assert.equal(lock!.n, 0, 'no lock left on the counter');
  } finally {
    proxy.release();
    await writer.end({ timeout: 1 });
    proxy.close();
  }
});
