// What every command receives: output, config, lazily connected clients.
import { connect, type Clients } from './client.js';
import type { CliConfig } from './config.js';
import { makeOut, type Out } from './output.js';

export interface Context {
  readonly config: CliConfig;
  readonly out: Out;
  /** Diagnostics and progress (never mixed into --json output). */
  readonly err: NodeJS.WritableStream;
  clients(): Clients;
  close(): void;
}

export function makeContext(config: CliConfig): Context {
  let clients: Clients | undefined;
  return {
    config,
    out: makeOut(config.json),
    err: process.stderr,
    clients() {
      clients ??= connect(config.server, config.actor, { token: config.token, tokenSource: config.tokenSource, tls: config.tls });
      return clients;
    },
    close() {
      clients?.close();
    },
  };
}
