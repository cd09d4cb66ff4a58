// What the control plane leaves in its data directory for a CLI on the same
// host (cli/src/config.ts reads both):
//
//   admin.token          the first admin API token (0600), written once, when
//                        authentication is on and no admin token is usable
//                        (first start, or every admin token revoked/expired)
//   control-plane.json   how to reach this control plane (0644, no secret),
//                        rewritten at every start: its ports, whether they
//                        speak TLS, the CA bundle to trust
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../pki/pki-files.js';
import type { TokenStore } from '../store/token-store.js';
import { generateToken, hashToken } from './api-token.js';
import type { SecurityMode } from './security-mode.js';

export const ADMIN_TOKEN_FILE = 'admin.token';
export const ENDPOINT_FILE = 'control-plane.json';

/** The CLI's view of a local control plane (cli/src/config.ts). */
export interface LocalEndpoint {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly tls: boolean;
  readonly security: SecurityMode;
  /** The CA bundle a client should trust (TLS only). */
  readonly caFile: string | undefined;
  readonly adminTokenFile: string | undefined;
}

/** Makes the first admin token if none is usable and writes it to <dataDir>/admin.token; returns its path when written. */
export async function bootstrapAdminToken(tokens: TokenStore, dataDir: string, logger: Logger): Promise<string | undefined> {
  const token = generateToken();
  const row = await tokens.createFirstAdmin(hashToken(token), 'system:bootstrap');
  if (!row) return undefined;
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  writeFileAtomic(path, `${token}\n`, 0o600);
  logger.warn({ path, tokenId: row.id.toString() }, 'created the first admin API token; the fleetwall CLI on this host uses it by itself');
  return path;
}

export function writeLocalEndpoint(dataDir: string, e: LocalEndpoint): void {
  mkdirSync(dataDir, { recursive: true });
  writeFileAtomic(join(dataDir, ENDPOINT_FILE), `${JSON.stringify(e, null, 2)}\n`, 0o644);
}
