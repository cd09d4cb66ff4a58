// The `fleetwall` command: operators' CLI and the entry point of the daemons.
import { readFileSync } from 'node:fs';
import { UsageError } from './args.js';
import { blockCommand } from './commands/block.js';
import { countersCommand } from './commands/counters.js';
import { eventsCommand, topCommand } from './commands/events.js';
import { explainCommand } from './commands/explain.js';
import { importCommand } from './commands/import.js';
import { nodesCommand } from './commands/nodes.js';
import { rulesCommand } from './commands/rules.js';
import { unblockCommand } from './commands/unblock.js';
import { DEFAULT_SERVER, loadCliConfig } from './config.js';
import { makeContext } from './context.js';
import { CliError, ExitCode } from './errors.js';
import { stringifyJson } from './output.js';

const HELP = `fleetwall: fleet-wide IP block/allow policy enforced in the kernel with eBPF

Policy (talks to the control plane at --server, env FLEETWALL_CONTROL_PLANE, default ${DEFAULT_SERVER}):
  fleetwall block <ip|cidr> [--ttl 1h] [--comment text] [--selector k=v] [--monitor] [--egress]
  fleetwall allow <ip|cidr> [--ttl 1h] [--comment text] [--selector k=v] [--egress]
  fleetwall unblock <ip|cidr>         delete its own fleet-wide deny rule; names broader rules that still block it
  fleetwall rules ls [--action deny|allow] [--direction ingress|egress] [--selector k=v] [--text t] [--covers ip]
  fleetwall rules get <id>
  fleetwall rules rm <id> [<id>...]
  fleetwall import <file|-> [--allow] [--egress] [--monitor] [--ttl 1h] [--selector k=v] [--atomic]
  fleetwall nodes ls [--selector k=v] [--connected]
  fleetwall counters [--watch] [--node name] [--top n] [--interval 1s]
  fleetwall explain <ip> [--node name] [--egress]
  fleetwall events [--follow] [--node N] [--rule ID] [--source CIDR] [--proto tcp|udp|icmp] [--port P] [--since 5m] [--limit N]
                   [--pcap FILE]      sampled drop events (a line each, --json, or a pcap file)
  fleetwall top [--rule ID] [--window 1m] [--watch]   top sources per rule (estimated packets)

Daemons:
  fleetwall control-plane [flags]     the gRPC/HTTP control plane (embedded Postgres without DATABASE_URL)
  fleetwall agent [flags]             the node agent (root; XDP ingress + TC egress)
  fleetwall agent uninstall [flags]   detach the programs and remove the pins
  fleetwall demo [--exit-after-drops] what \`npm start\` runs: control plane + agent + traffic in two netns

Global flags: --server host:port, --json (one JSON document per line), --help, --version
Exit codes: 0 ok, 1 failure, 2 usage, 3 rejected by the control plane, 4 not found, 5 control plane unreachable`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Pulls --server/--json/--help/--version out of argv (anywhere). */
function splitGlobals(argv: string[]): { rest: string[]; server?: string; json: boolean; help: boolean; version: boolean } {
  const rest: string[] = [];
  let server: string | undefined;
  let json = false;
  let help = false;
  let ver = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '--help' || a === '-h') help = true;
    else if (a === '--version') ver = true;
    else if (a === '--server') {
      server = argv[++i];
      if (server === undefined) throw new UsageError('--server needs a value (host:port)');
    } else if (a.startsWith('--server=')) server = a.slice('--server='.length);
    else rest.push(a);
  }
  return { rest, ...(server !== undefined ? { server } : {}), json, help, version: ver };
}

export async function run(argv: string[]): Promise<number> {
  // Global flags may come before the command too: `fleetwall --server h:p rules ls`.
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += argv[i] === '--server' ? 2 : 1;
  const command = argv[i];
  const args = [...argv.slice(0, i), ...argv.slice(i + 1)];
  // Daemons parse their own flags (their config.ts).
  if (command === 'control-plane') {
    const m = await import('../../control-plane/src/main.js');
    await m.main(args);
    return ExitCode.Ok;
  }
  if (command === 'agent') {
    const m = await import('../../node-agent/src/main.js');
    await m.main(args);
    return ExitCode.Ok;
  }
  if (command === 'demo') {
    const m = await import('./demo/demo.js');
    return m.runDemo(args);
  }

  let globals: ReturnType<typeof splitGlobals>;
  try {
    globals = splitGlobals(args);
  } catch (e) {
    process.stderr.write(`fleetwall: ${(e as Error).message}\n`);
    return ExitCode.Usage;
  }
  if (globals.version || command === 'version') {
    process.stdout.write(`fleetwall ${version()}\n`);
    return ExitCode.Ok;
  }
  if (command === undefined || command === 'help' || globals.help) {
    process.stdout.write(`${HELP}\n`);
    return command === undefined && !globals.help ? ExitCode.Usage : ExitCode.Ok;
  }
  const ctx = makeContext(loadCliConfig({ ...(globals.server !== undefined ? { server: globals.server } : {}), json: globals.json }));
  try {
    switch (command) {
      case 'block':
      case 'allow':
        await blockCommand(ctx, command, globals.rest);
        break;
      case 'whitelist':
        await blockCommand(ctx, 'allow', globals.rest);
        break;
      case 'unblock':
        await unblockCommand(ctx, globals.rest);
        break;
      case 'rules':
        await rulesCommand(ctx, globals.rest);
        break;
      case 'import':
        await importCommand(ctx, globals.rest);
        break;
      case 'nodes':
        await nodesCommand(ctx, globals.rest);
        break;
      case 'counters':
        await countersCommand(ctx, globals.rest);
        break;
      case 'explain':
        await explainCommand(ctx, globals.rest);
        break;
      case 'events':
        await eventsCommand(ctx, globals.rest);
        break;
      case 'top':
        await topCommand(ctx, globals.rest);
        break;
      default:
        throw new UsageError(`unknown command "${command}"; run \`fleetwall --help\``);
    }
    return ExitCode.Ok;
  } catch (e) {
    const err =
      e instanceof UsageError
        ? new CliError(e.message, ExitCode.Usage, 'USAGE')
        : e instanceof CliError
          ? e
          : new CliError(`unexpected error: ${(e as Error)?.stack ?? String(e)}`, ExitCode.Failure, 'INTERNAL');
    if (ctx.out.json)
      process.stderr.write(`${stringifyJson({ error: { message: err.message, reason: err.reason, exitCode: err.exitCode } })}\n`);
    else process.stderr.write(`fleetwall: ${err.message}\n`);
    return err.exitCode;
  } finally {
    ctx.close();
  }
}

const code = await run(process.argv.slice(2));
// Daemons keep running on their own handles; commands exit with their code.
if (!['control-plane', 'agent', 'demo'].includes(process.argv[2] ?? '') || code !== 0) process.exitCode = code;
