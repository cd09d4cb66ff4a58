// The CLI's configuration: global flags and FLEETWALL_* env, read once.
export interface CliConfig {
  /** Control plane gRPC address (host:port). */
  readonly server: string;
  readonly json: boolean;
  /** Whether stdout/stderr are terminals (tables redraw, progress bars). */
  readonly stdoutTty: boolean;
  readonly stderrTty: boolean;
  readonly noColor: boolean;
  /** Who is calling, for created_by and the audit log: "cli:<user>". */
  readonly actor: string;
}

export const DEFAULT_SERVER = 'localhost:50051';

export function loadCliConfig(globals: { server?: string; json: boolean }, env: NodeJS.ProcessEnv = process.env): CliConfig {
  return Object.freeze({
    server: globals.server ?? env.FLEETWALL_CONTROL_PLANE ?? DEFAULT_SERVER,
    json: globals.json,
    stdoutTty: Boolean(process.stdout.isTTY),
    stderrTty: Boolean(process.stderr.isTTY),
    noColor: env.NO_COLOR !== undefined,
    actor: `cli:${env.USER ?? env.LOGNAME ?? 'unknown'}`,
  });
}
