// A real PostgreSQL server for one test file (or benchmark).
//
//   import { startTestPostgres } from '../support/postgres.js';
//
//   const pg = await startTestPostgres();   // embedded Postgres 18, free port, unique temp dir
//   pg.url                                   // postgres://postgres:...@127.0.0.1:PORT/postgres
//   const url2 = await pg.newDatabase();     // a fresh empty database on the same server
//   await pg.stopServer();                   // an outage: the server stops, its data stays
//   await pg.startServer();                  // back on the same port with the same data (same URLs)
//   await pg.stop();                         // stop the server, delete the directory (idempotent)
//
// Use one server per test file and `newDatabase()` per independent scenario
// (each control plane migrates the database it is given). The server runs
// with fsync off: it is for tests only. However the test process ends (exit,
// SIGINT, SIGTERM, SIGHUP: test/support/process-end.ts) the server is stopped
// and the directory removed; only SIGKILL leaves them.
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pino, { type Logger } from 'pino';
import postgres from 'postgres';
import { startEmbeddedPostgres } from '../../control-plane/src/store/embedded-postgres.js';
import { onProcessEnd } from './process-end.js';

export interface TestPostgres {
  /** URL of the server's default `postgres` database. */
  readonly url: string;
  readonly port: number;
  /** The temp directory holding the cluster. */
  readonly dir: string;
  /** Creates an empty database and returns its URL. */
  newDatabase(name?: string): Promise<string>;
  /** Stops the server (fast shutdown: connections are cut) and keeps its data directory. */
  stopServer(): Promise<void>;
  /** Starts it again on the same port with the same data; URLs stay valid. */
  startServer(): Promise<void>;
  stop(): Promise<void>;
}

export interface TestPostgresOptions {
  readonly logger?: Logger;
  /** Extra server settings (`-c name=value`). */
  readonly settings?: Readonly<Record<string, string>>;
}

export async function startTestPostgres(opts: TestPostgresOptions = {}): Promise<TestPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetwall-pg-'));
  // mkdtemp makes 0700 folders; the postgres user must be able to enter it.
  chmodSync(dir, 0o755);
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  // However this process ends (the runner's SIGTERM past --test-timeout, Ctrl-C
  // to the group, an exit): the server this file started is stopped at once
  // (SIGQUIT: immediate shutdown, synchronous to send) and its directory
  // removed. Without it a killed test file left a postmaster running.
  const forget = onProcessEnd(() => {
    killPostmaster(dir);
    removeDir();
  });
  const logger = opts.logger ?? pino({ level: 'silent' });
  const settings = { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', ...opts.settings };
  let pg: Awaited<ReturnType<typeof startEmbeddedPostgres>>;
  try {
    pg = await startEmbeddedPostgres({ dataDir: dir, port: 0, logger, settings });
  } catch (e) {
    removeDir();
    throw e;
  }
  let stopped: Promise<void> | undefined;
  let server = pg;
  let running = true;
  return {
    url: pg.url,
    port: pg.port,
    dir,
    async newDatabase(name?: string): Promise<string> {
      const db = name ?? `t_${randomBytes(6).toString('hex')}`;
      if (!/^[a-z_][a-z0-9_]*$/.test(db)) throw new Error(`database name ${db} must be lower-case letters, digits and _`);
      const sql = postgres(server.url, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(`create database ${db}`);
      } finally {
        await sql.end();
      }
      const u = new URL(server.url);
      u.pathname = `/${db}`;
      return u.toString();
    },
    async stopServer() {
      if (!running) return;
      running = false;
      await server.stop();
    },
    async startServer() {
      if (running) return;
      server = await startEmbeddedPostgres({ dataDir: dir, port: pg.port, logger, settings });
      running = true;
    },
    stop() {
      stopped ??= (async () => {
        try {
          if (running) await server.stop();
        } finally {
          removeDir();
          forget();
        }
      })();
      return stopped;
    },
  };
}

/** Sends SIGQUIT to the postmaster named by `dir`'s postmaster.pid, if any (synchronous: runs while the process ends). */
function killPostmaster(dir: string): void {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return; // not running
  }
  if (!(pid > 1)) return;
  try {
    // Only a postgres process (the PID could be stale and reused).
    if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'postgres') return;
    process.kill(pid, 'SIGQUIT');
  } catch {
    /* gone already */
  }
}
