// Opens the store: DATABASE_URL when given, else an embedded Postgres under
// the data directory; applies migrations; reads the store id and the page
// token key. Two pools: `sql` for writes and the sync feed, `readSql` for
// reads and health checks, so a read never waits for a connection a write
// holds. Every pooled connection has a statement_timeout and an
// idle_in_transaction_session_timeout, so no statement or forgotten
// transaction holds a connection or a lock forever.
import { readFileSync } from 'node:fs';
import postgres, { type Sql } from 'postgres';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from './embedded-postgres.js';
import { migrate } from './migrations.js';

export interface Database {
  /** Writes, the revision feed, sessions. */
  readonly sql: Sql;
  /** Reads (List/Get/Explain/counters) and /healthz. */
  readonly readSql: Sql;
  readonly url: string;
  /** Identifies this database to agents (SyncStart.store_id). */
  readonly storeId: string;
  /** Signs page tokens (shared by every control plane of the store). */
  readonly pageTokenKey: string;
  /** Set when this process started the server. */
  readonly embedded: EmbeddedPostgres | undefined;
  close(): Promise<void>;
}

export interface ConnectOptions {
  readonly max: number;
  readonly applicationName: string;
  readonly logger: Logger;
  /** statement_timeout, ms (0: none). */
  readonly statementTimeoutMs?: number;
  /** idle_in_transaction_session_timeout, ms (0: none). */
  readonly idleInTransactionTimeoutMs?: number;
  /** Read at each connect (an operator's DATABASE_URL with FLEETWALL_DATABASE_PASSWORD_FILE). */
  readonly passwordFile?: string | undefined;
}

export function connect(url: string, opts: ConnectOptions): Sql {
  const file = opts.passwordFile;
  return postgres(url, {
    max: opts.max,
    // Read at each connect: a rotated secret is picked up by new connections.
    ...(file !== undefined ? { password: () => readFileSync(file, 'utf8').trim() } : {}),
    types: { bigint: postgres.BigInt },
    onnotice: (n) => opts.logger.debug({ notice: n.message }, 'postgres notice'),
    connection: {
      application_name: opts.applicationName,
      // Startup parameters: set on every connection of the pool, before any query.
      ...(opts.statementTimeoutMs ? { statement_timeout: String(opts.statementTimeoutMs) } : {}),
      ...(opts.idleInTransactionTimeoutMs ? { idle_in_transaction_session_timeout: String(opts.idleInTransactionTimeoutMs) } : {}),
    } as Record<string, string>,
    idle_timeout: 0,
    connect_timeout: 5,
    // Seconds before reconnecting after failed connects. postgres.js's default
    // grows to 20 s, and a query issued meanwhile waits for it: during an
    // outage a call would outlive its deadline instead of answering
    // UNAVAILABLE, and recovery would lag. At most 1 s here.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 1),
    // The write path never reuses statement text across very different
    // shapes; prepared statements keep the hot queries cheap.
    prepare: true,
  });
}

export async function openDatabase(config: Config, logger: Logger): Promise<Database> {
  let embedded: EmbeddedPostgres | undefined;
  let url = config.databaseUrl;
  if (!url) {
    embedded = await startEmbeddedPostgres({
      dataDir: config.dataDir,
      port: config.embeddedPostgresPort,
      logger: logger.child({ component: 'embedded-postgres' }),
    });
    url = embedded.url;
  }
  const name = `fleetwall-cp ${config.controlPlaneId}`.slice(0, 60);
  const common = {
    logger,
    statementTimeoutMs: config.dbStatementTimeoutMs,
    idleInTransactionTimeoutMs: config.dbIdleInTransactionTimeoutMs,
    // Only for an operator's DATABASE_URL: the embedded server has its own.
    passwordFile: embedded ? undefined : config.databasePasswordFile,
  };
  const sql = connect(url, { max: config.dbPoolSize, applicationName: name, ...common });
  const readSql = connect(url, { max: config.dbReadPoolSize, applicationName: `${name} r`, ...common });
  try {
    await migrate(sql, logger);
    const rows = await sql<{ key: string; value: string }[]>`select key, value from meta where key in ('store_id', 'page_token_key')`;
    const meta = new Map(rows.map((r) => [r.key, r.value]));
    return {
      sql,
      readSql,
      url,
      storeId: meta.get('store_id')!,
      pageTokenKey: meta.get('page_token_key')!,
      embedded,
      async close() {
        await Promise.all([sql.end({ timeout: 5 }), readSql.end({ timeout: 5 })]);
        if (embedded) await embedded.stop();
      },
    };
  } catch (e) {
    await Promise.all([sql.end({ timeout: 1 }), readSql.end({ timeout: 1 })]).catch(() => undefined);
    if (embedded) await embedded.stop().catch(() => undefined);
    throw e;
  }
}
