// Opens the store: DATABASE_URL when given, else an embedded Postgres under
// the data directory; applies migrations; reads the store id.
import { readFileSync } from 'node:fs';
import postgres, { type Sql } from 'postgres';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from './embedded-postgres.js';
import { migrate } from './migrations.js';

export interface Database {
  readonly sql: Sql;
  readonly url: string;
  /** Identifies this database to agents (SyncStart.store_id). */
  readonly storeId: string;
  /** Set when this process started the server. */
  readonly embedded: EmbeddedPostgres | undefined;
  close(): Promise<void>;
}

export function connect(
  url: string,
  opts: { max: number; applicationName: string; logger: Logger; passwordFile?: string | undefined },
): Sql {
  const file = opts.passwordFile;
  return postgres(url, {
    max: opts.max,
    // Read at each connect: a rotated secret is picked up by new connections.
    ...(file !== undefined ? { password: () => readFileSync(file, 'utf8').trim() } : {}),
    types: { bigint: postgres.BigInt },
    onnotice: (n) => opts.logger.debug({ notice: n.message }, 'postgres notice'),
    connection: { application_name: opts.applicationName },
    idle_timeout: 0,
    connect_timeout: 10,
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
  const sql = connect(url, {
    max: config.dbPoolSize,
    applicationName: `fleetwall-cp ${config.controlPlaneId}`.slice(0, 63),
    logger,
    // Only for an operator's DATABASE_URL: the embedded server has its own.
    passwordFile: embedded ? undefined : config.databasePasswordFile,
  });
  try {
    await migrate(sql, logger);
    const [row] = await sql<{ value: string }[]>`select value from meta where key = 'store_id'`;
    const storeId = row!.value;
    return {
      sql,
      url,
      storeId,
      embedded,
      async close() {
        await sql.end({ timeout: 5 });
        if (embedded) await embedded.stop();
      },
    };
  } catch (e) {
    await sql.end({ timeout: 1 }).catch(() => undefined);
    if (embedded) await embedded.stop().catch(() => undefined);
    throw e;
  }
}
