// `fleetwall control-plane [flags]`: parses the configuration, creates the
// root logger, starts the control plane and stops it gracefully on SIGINT,
// SIGTERM or SIGHUP (agents are told to reconnect, state is flushed, the
// embedded Postgres stops; a second signal exits at once). Also runs when
// executed directly:
//   node --import tsx control-plane/src/main.ts --grpc-port 50051
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { CONFIG_USAGE, ConfigError, loadConfig } from './config.js';
import { startControlPlane } from './control-plane.js';

export { startControlPlane, type ControlPlane, type StartOptions } from './control-plane.js';
export { configWith, parseConfig, type Config } from './config.js';
export { startEmbeddedPostgres, type EmbeddedPostgres } from './store/embedded-postgres.js';

export async function main(argv: string[]): Promise<void> {
  let parsed: ReturnType<typeof loadConfig>;
  try {
    parsed = loadConfig(argv);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`fleetwall control-plane: ${e.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw e;
  }
  if (parsed.help) {
    process.stdout.write(`${CONFIG_USAGE}\n`);
    return;
  }
  const config = parsed.config;
  const logger = pino({ level: config.logLevel, base: { service: 'fleetwall-control-plane' } });
  let cp: Awaited<ReturnType<typeof startControlPlane>>;
  try {
    cp = await startControlPlane(config, logger);
  } catch (err) {
    logger.fatal({ err }, 'control plane failed to start');
    process.exitCode = 1;
    return;
  }
  await new Promise<void>((resolve) => {
    let signalled = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (signalled) {
        logger.warn({ signal: sig }, 'second signal: exiting now');
        process.exit(130);
      }
      signalled = true;
      logger.info({ signal: sig }, 'shutting down');
      cp.stop().then(
        () => resolve(),
        (err) => {
          logger.error({ err }, 'shutdown failed');
          process.exitCode = 1;
          resolve();
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal); // the terminal closed
  });
}

function isEntryPoint(): boolean {
  const arg = process.argv[1];
  if (!arg) return false;
  try {
    return realpathSync(arg) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`fleetwall control-plane: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
