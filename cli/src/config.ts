// The CLI's configuration: global flags and FLEETWALL_* env, read once.
//
// How it reaches the control plane (issue 15):
//   --server / FLEETWALL_CONTROL_PLANE      host:port (default localhost:50051)
//   --token / FLEETWALL_TOKEN               an API token (FLEETWALL_TOKEN_FILE: read it from a file)
//   --ca-cert / FLEETWALL_CA_CERT           the CA bundle to trust; turns TLS on
//   --tls / FLEETWALL_TLS=1                 TLS with the system's CAs
// On the same host it finds the control plane by itself: for a loopback
// --server, <data-dir>/control-plane.json (FLEETWALL_DATA_DIR, default
// .fleetwall, then /var/lib/fleetwall) says whether that port speaks TLS and
// with which CA, and <data-dir>/admin.token is the first admin token. A local
// token is never sent to another host.
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';

export interface CliConfig {
  /** Control plane gRPC address (host:port). */
  readonly server: string;
  readonly json: boolean;
  /** Whether stdout/stderr are terminals (tables redraw, progress bars). */
  readonly stdoutTty: boolean;
  readonly stderrTty: boolean;
  readonly noColor: boolean;
  /** A note for the audit log, sent as x-fleetwall-actor: "cli:<user>" (never an identity: the server records the token's principal). */
  readonly actor: string;
  /** The API token to send (authorization: Bearer), if any. */
  readonly token: string | undefined;
  /** Where the token came from, for messages ("--token", "FLEETWALL_TOKEN", "/var/lib/fleetwall/admin.token"). */
  readonly tokenSource: string | undefined;
  /** TLS: the CA bundle to trust (undefined: the system's), or undefined for plaintext. */
  readonly tls: { readonly ca: Buffer | undefined; readonly caSource: string } | undefined;
}

export const DEFAULT_SERVER = 'localhost:50051';

export interface CliGlobals {
  readonly server?: string;
  readonly json: boolean;
  readonly token?: string;
  readonly caCert?: string;
  readonly tls?: boolean;
}

/** What a local control plane wrote for us (control-plane/src/auth/local-files.ts). */
interface LocalEndpoint {
  readonly grpcPort: number;
  readonly tls: boolean;
  readonly caFile?: string;
  readonly adminTokenFile?: string;
}

export function splitHostPort(target: string): { host: string; port: number | undefined } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(target) ?? /^([^:]+)(?::(\d+))?$/.exec(target);
  if (!m) return { host: target, port: undefined };
  return { host: m[1]!, port: m[2] === undefined ? undefined : Number(m[2]) };
}

export function isLoopbackTarget(target: string): boolean {
  const { host } = splitHostPort(target.replace(/^dns:\/*/, ''));
  const h = host.toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}

function readEndpoint(dir: string): LocalEndpoint | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'control-plane.json'), 'utf8')) as LocalEndpoint;
  } catch {
    return undefined;
  }
}

function readTokenFile(path: string): string | undefined {
  try {
    const t = readFileSync(path, 'utf8').trim();
    return t === '' ? undefined : t;
  } catch {
    return undefined;
  }
}

/** The data directories a local control plane may use, most specific first. */
function localDirs(env: NodeJS.ProcessEnv): string[] {
  return env.FLEETWALL_DATA_DIR ? [resolve(env.FLEETWALL_DATA_DIR)] : [resolve('.fleetwall'), '/var/lib/fleetwall'];
}

export function loadCliConfig(globals: CliGlobals, env: NodeJS.ProcessEnv = process.env): CliConfig {
  const server = globals.server ?? env.FLEETWALL_CONTROL_PLANE ?? DEFAULT_SERVER;
  const local = isLoopbackTarget(server);
  const port = splitHostPort(server).port ?? 50051;
  let endpointDir: string | undefined;
  let endpoint: LocalEndpoint | undefined;
  if (local) {
    for (const dir of localDirs(env)) {
      const e = readEndpoint(dir);
      if (e && e.grpcPort === port) {
        endpoint = e;
        endpointDir = dir;
        break;
      }
    }
  }

  let tls: CliConfig['tls'];
  const caPath = globals.caCert ?? env.FLEETWALL_CA_CERT;
  if (caPath !== undefined && caPath !== '') tls = { ca: readFileSync(caPath), caSource: caPath };
  else if (globals.tls || /^(1|true|yes)$/i.test(env.FLEETWALL_TLS ?? '')) tls = { ca: undefined, caSource: 'the system CAs' };
  else if (endpoint?.tls && endpoint.caFile && existsSync(endpoint.caFile))
    tls = { ca: readFileSync(endpoint.caFile), caSource: endpoint.caFile };

  let token: string | undefined;
  let tokenSource: string | undefined;
  const pick = (t: string | undefined, source: string) => {
    if (token === undefined && t !== undefined && t !== '') {
      token = t.trim();
      tokenSource = source;
    }
  };
  pick(globals.token, '--token');
  pick(env.FLEETWALL_TOKEN, 'FLEETWALL_TOKEN');
  if (env.FLEETWALL_TOKEN_FILE) pick(readTokenFile(env.FLEETWALL_TOKEN_FILE), env.FLEETWALL_TOKEN_FILE);
  if (local && endpoint?.adminTokenFile) pick(readTokenFile(endpoint.adminTokenFile), endpoint.adminTokenFile);
  if (local && endpointDir) pick(readTokenFile(join(endpointDir, 'admin.token')), join(endpointDir, 'admin.token'));

  return Object.freeze({
    server,
    json: globals.json,
    stdoutTty: Boolean(process.stdout.isTTY),
    stderrTty: Boolean(process.stderr.isTTY),
    noColor: env.NO_COLOR !== undefined,
    actor: `cli:${env.USER ?? env.LOGNAME ?? 'unknown'}`,
    token,
    tokenSource,
    tls,
  });
}
