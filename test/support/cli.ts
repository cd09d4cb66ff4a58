// The real CLI (bin/fleetwall.mjs) run as a child process against a control
// plane, for the operator tests: its exit code and its whole output.
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { resolve } from 'node:path';

export const CLI_BIN = resolve(import.meta.dirname, '../../bin/fleetwall.mjs');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** fd 0: a string written then closed (the default: ''), a socket, or 'ignore' (/dev/null). */
  readonly stdin?: string | Socket | 'ignore';
  /** The whole environment (default: this process's, with NO_COLOR=1). */
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/** `fleetwall --server <server> ...args`. */
export function runCli(server: string, args: readonly string[], o: CliOptions = {}): Promise<CliRun> {
  const input = o.stdin ?? '';
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI_BIN, '--server', server, ...args], {
      stdio: [typeof input === 'string' ? 'pipe' : input, 'pipe', 'pipe'],
      env: o.env ?? { ...process.env, NO_COLOR: '1' },
      ...(o.cwd ? { cwd: o.cwd } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    if (typeof input === 'string') child.stdin!.end(input);
    child.once('exit', (code) => done({ code, stdout, stderr }));
  });
}
