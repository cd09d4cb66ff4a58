// `fleetwall agent [flags]` and `fleetwall agent uninstall`: the node agent's
// entry point. Creates the root logger, starts the agent, and on SIGINT,
// SIGTERM or SIGHUP (the terminal closed) stops gracefully, leaving
// enforcement in place. Runs on its own too:
//   node --import tsx node-agent/src/main.ts --interfaces eth0 ...

import { existsSync } from 'node:fs';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import { Agent } from './agent.js';
import { ConfigError, loadConfig, loadUninstallConfig, usage } from './config.js';
import { openDatapath, uninstallPins } from './datapath/bpf-datapath.js';
import { IdentityError, NodeIdentity } from './identity/node-identity.js';

function rootLogger(level: string, nodeName?: string): Logger {
  return pino({ level, base: { svc: 'fleetwall-agent', pid: process.pid, ...(nodeName ? { node: nodeName } : {}) } });
}

async function uninstall(argv: string[]): Promise<void> {
  const cfg = loadUninstallConfig(argv);
  const log = rootLogger(cfg.logLevel);
  if (!existsSync(cfg.pinPath)) {
    log.info({ pinPath: cfg.pinPath }, 'nothing to uninstall: no pins');
    return;
  }
  // No object is loaded: this removes pins of any ABI version (an older install too).
  const detached = uninstallPins(cfg.pinPath);
  log.info({ pinPath: cfg.pinPath, detached }, 'uninstalled: programs detached, pins removed');
}

/**
 * Runs the agent until SIGINT/SIGTERM/SIGHUP (or `uninstall` and returns).
 * argv: the arguments after `fleetwall agent` (a leading "agent" is skipped).
 */
export async function main(argv: string[]): Promise<void> {
  const args = argv[0] === 'agent' ? argv.slice(1) : argv;
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  try {
    if (args[0] === 'uninstall') return await uninstall(args.slice(1));
    const cfg = loadConfig(args);
    const log = rootLogger(cfg.logLevel, cfg.nodeName);
    // The node's certificate first (enrolling with the join token if there is none yet): the stream needs it.
    const identity = await NodeIdentity.open(cfg, log.child({ component: 'identity' }));
    const agent = await Agent.start(cfg, { openDatapath, logger: log, identity });
    await new Promise<void>((resolve) => {
      let stopping = false;
      const onSignal = (sig: NodeJS.Signals): void => {
        if (stopping) return;
        stopping = true;
        log.info({ signal: sig }, 'stopping');
        agent
          .stop()
          .catch((e: unknown) => log.error({ err: e }, 'stop failed'))
          .finally(() => {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
            process.off('SIGHUP', onSignal);
            resolve();
          });
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      process.on('SIGHUP', onSignal);
    });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`fleetwall agent: ${e.message}\n`);
      process.exitCode = 2;
      return;
    }
    if (e instanceof IdentityError) {
      process.stderr.write(`fleetwall agent: ${e.message}\n`);
      process.exitCode = 1;
      return;
    }
    throw e;
  }
}

function runDirectly(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (runDirectly()) {
  main(process.argv.slice(2)).then(
    () => process.exit(process.exitCode ?? 0),
    (e: unknown) => {
      process.stderr.write(`fleetwall agent: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
