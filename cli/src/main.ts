// The `fleetwall` command: operators' CLI and the entry point of the daemons.

// grpc-js passes an IP-address target as the TLS server name, which Node 20
// reports as deprecated (DEP0123) on every command's stderr, where --json
// errors go; the certificate is still checked against the address.
process.noDeprecation = true;
import { readFileSync } from 'node:fs';
import { UsageError } from './args.js';
import { blockCommand } from './commands/block.js';
import { countersCommand } from './commands/counters.js';
import { eventsCommand, topCommand } from './commands/events.js';
import { explainCommand } from './commands/explain.js';
import { importCommand } from './commands/import.js';
import { listsCommand } from './commands/lists.js';
import { nodesCommand } from './commands/nodes.js';
import { rulesCommand } from './commands/rules.js';
import { unblockCommand } from './commands/unblock.js';
import { DEFAULT_SERVER, loadCliConfig } from './config.js';
import { makeContext } from './context.js';
import { CliError, ExitCode } from './errors.js';
import { stringifyJson } from './output.js';
import { sanitizeText } from './sanitize.js';
import { auditCommand } from './commands/audit.js';
import { tokenCommand } from './commands/token.js';
import { enrollCommand } from './commands/enroll.js';

const HELP = `fleetwall: fleet-wide IP block/allow policy enforced in the kernel with eBPF

Policy (talks to the control plane at --server, env FLEETWALL_CONTROL_PLANE, default ${DEFAULT_SERVER}):
  fleetwall block <ip|cidr> [--ttl 1h] [--comment text] [--selector k=v] [--monitor] [--egress] [--force]
  fleetwall allow <ip|cidr> [--ttl 1h] [--comment text] [--selector k=v] [--egress]
  fleetwall unblock <ip|cidr>         delete its own fleet-wide deny rule; names broader rules that still block it
  fleetwall rules ls [--action deny|allow] [--direction ingress|egress] [--selector k=v] [--text t] [--covers ip]
  fleetwall rules get <id>
  fleetwall rules rm <id> [<id>...]
  fleetwall import <file|-> [--allow] [--egress] [--monitor] [--ttl 1h] [--selector k=v] [--atomic]
                   [--format auto|plain|range|jsonl|csv] [--column name] [--allow-private]
  fleetwall lists add <name> --url URL|--file PATH [--every 1h] [--format F] [--column name]
                   [--action deny|allow] [--selector k=v] [--monitor] [--egress] [--allow-private]
                                      subscribe the fleet to a published list; refreshed by diffs
  fleetwall lists ls | get <name> | refresh <name> [--force] | rm <name>
  fleetwall nodes ls [--selector k=v] [--connected]
  fleetwall nodes rm <name> [<name>...]  forget nodes (refused while their agent is connected)
  fleetwall counters [--watch] [--node name] [--top n] [--interval 1s]
  fleetwall explain <ip> [--node name] [--egress]
  fleetwall events [--follow] [--node N] [--rule ID] [--source CIDR] [--proto tcp|udp|icmp] [--port P] [--since 5m] [--limit N]
                   [--pcap FILE]      sampled drop events (a line each, --json, or a pcap file)
  fleetwall top [--rule ID] [--window 1m] [--watch]   top sources per rule (estimated packets)
  fleetwall audit [--actor principal] [--rule id] [--action rule.delete|token.] [--limit n]

Access (admin):
  fleetwall token create --role viewer|operator|admin [--name n] [--ttl 30d]   shows the token once
  fleetwall token ls [--all]
  fleetwall token revoke <id|name>
  fleetwall enroll create [--node-name N] [--labels k=v,...] [--ttl 1h]   a single-use join token + the CA pin
  fleetwall enroll ls [--all] ; fleetwall enroll revoke <id>
  fleetwall nodes label <name> k=v,...   set an enrolled node's labels (its policy group)
  fleetwall nodes revoke <name>          refuse its certificates, close its stream now

Daemons:
  fleetwall control-plane [flags]     the gRPC/HTTP control plane (embedded Postgres without DATABASE_URL)
  fleetwall agent [flags]             the node agent (root; XDP ingress + TC egress)
  fleetwall agent uninstall [flags]   detach the programs and remove the pins
  fleetwall demo [--exit-after-drops] what \`npm start\` runs: control plane + agent + traffic in two netns

Global flags: --server host:port, --token T (FLEETWALL_TOKEN), --ca-cert FILE (FLEETWALL_CA_CERT; turns TLS on),
  --tls (TLS with the system CAs), --json (one JSON document per line), --help, --version.
  On the control plane's host a loopback --server needs none of them: <data-dir>/control-plane.json and
  admin.token (FLEETWALL_DATA_DIR, default .fleetwall, then /var/lib/fleetwall) say how to connect.
Exit codes: 0 ok, 1 failure, 2 usage, 3 rejected by the control plane, 4 not found, 5 control plane unreachable,
  6 not allowed (no, unknown, expired or revoked token; role too low)`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Global flags that take a value. */
const GLOBAL_VALUES = { server: 'host:port', token: 'an API token', 'ca-cert': 'a PEM file' } as const;
type GlobalValue = keyof typeof GLOBAL_VALUES;

/** Pulls --server/--token/--ca-cert/--tls/--json/--help/--version out of argv (anywhere). */
function splitGlobals(argv: string[]): {
  rest: string[];
  values: Partial<Record<GlobalValue, string>>;
  tls: boolean;
  json: boolean;
  help: boolean;
  version: boolean;
} {
  const rest: string[] = [];
  const values: Partial<Record<GlobalValue, string>> = {};
  let json = false;
  let help = false;
  let ver = false;
  let tls = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.replace(/^--/, '').split('=')[0]! as GlobalValue;
    if (a === '--json') json = true;
    else if (a === '--help' || a === '-h') help = true;
    else if (a === '--version') ver = true;
    else if (a === '--tls') tls = true;
    else if (a.startsWith('--') && Object.hasOwn(GLOBAL_VALUES, name)) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value (${GLOBAL_VALUES[name]})`);
      values[name] = v;
    } else rest.push(a);
  }
  return { rest, values, tls, json, help, version: ver };
}

export async function run(argv: string[]): Promise<number> {
  // Global flags may come before the command too: `fleetwall --server h:p rules ls`.
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += ['--server', '--token', '--ca-cert'].includes(argv[i]!) ? 2 : 1;
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
  let config: ReturnType<typeof loadCliConfig>;
  try {
    config = loadCliConfig({
      ...(globals.values.server !== undefined ? { server: globals.values.server } : {}),
      ...(globals.values.token !== undefined ? { token: globals.values.token } : {}),
      ...(globals.values['ca-cert'] !== undefined ? { caCert: globals.values['ca-cert'] } : {}),
      tls: globals.tls,
      json: globals.json,
    });
  } catch (e) {
    process.stderr.write(`fleetwall: ${sanitizeText((e as Error).message)}\n`);
    return ExitCode.Usage;
  }
  const ctx = makeContext(config);
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
      case 'lists':
        await listsCommand(ctx, globals.rest);
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
      case 'token':
        await tokenCommand(ctx, globals.rest);
        break;
      case 'audit':
        await auditCommand(ctx, globals.rest);
        break;
      case 'enroll':
        await enrollCommand(ctx, globals.rest);
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
    // Messages quote stored and server text: no terminal escapes reach the terminal.
    else process.stderr.write(`fleetwall: ${sanitizeText(err.message)}\n`);
    return err.exitCode;
  } finally {
    ctx.close();
  }
}

const code = await run(process.argv.slice(2));
// Daemons keep running on their own handles; commands exit with their code.
if (!['control-plane', 'agent', 'demo'].includes(process.argv[2] ?? '') || code !== 0) process.exitCode = code;
