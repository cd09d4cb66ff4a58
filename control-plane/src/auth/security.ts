// Sets up trust for one control-plane process (issue 15, parts 1, 2, 4, 6):
// the security mode, the TLS material (own PKI or operator-given files,
// watched for changes), the token verifier listening for revocations, the
// authenticator with its penalty box and failure counter, the gRPC
// interceptor and credentials, the HTTP guard, the first admin token and the
// local endpoint file. control-plane.ts calls setUpSecurity() once.
import { existsSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { ServerCredentials } from '@grpc/grpc-js';
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { HttpGuard } from '../http/router.js';
import { grpcServerCredentials } from '../pki/grpc-credentials.js';
import { ensureOwnPki, type TlsFilePaths } from '../pki/pki-files.js';
import { serverSans } from '../pki/server-sans.js';
import { TlsFiles } from '../pki/tls-files.js';
import type { TokenStore } from '../store/token-store.js';
import type { Reason } from '../errors/catalogue.js';
import { authFailureCounter } from './auth-metrics.js';
import { Authenticator } from './authenticator.js';
import { grpcAuthInterceptor } from './grpc-auth.js';
import { httpGuard } from './http-auth.js';
import { ADMIN_TOKEN_FILE, bootstrapAdminToken, writeLocalEndpoint } from './local-files.js';
import { DEFAULT_PENALTY, PenaltyBox } from './penalty-box.js';
import { allowedHostNames, isLoopbackHost, type SecurityMode, securityMode, securityModeReason } from './security-mode.js';
import { TokenVerifier } from './token-verifier.js';

export interface Security {
  readonly mode: SecurityMode;
  /** Set when TLS is on. */
  readonly tlsFiles: TlsFiles | undefined;
  readonly grpcCredentials: ServerCredentials | undefined;
  readonly grpcInterceptor: ReturnType<typeof grpcAuthInterceptor>;
  readonly httpGuard: HttpGuard;
  /** Written at this start, if any. */
  readonly adminTokenFile: string | undefined;
  /** Counts a refusal outside the interceptor and guard (enrollment): fleetwall_auth_failures_total{reason}. */
  readonly countFailure: (reason: Reason) => void;
  /** Writes control-plane.json once the ports are known. */
  announce(grpcPort: number, httpPort: number): void;
  stop(): Promise<void>;
}

/** How often the own server certificate is checked for renewal. */
const OWN_CERT_CHECK_MS = 6 * 3_600_000;

function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((a): a is NonNullable<typeof a> => a !== undefined)
    .map((a) => a.address);
}

/** The TLS files to serve: operator-given, or the own PKI (created / renewed as needed). */
async function tlsPaths(config: Config, logger: Logger): Promise<TlsFilePaths> {
  if (config.tlsCertFile !== undefined && config.tlsKeyFile !== undefined)
    return { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile, caFile: config.tlsCaFile };
  const sans = serverSans({
    hosts: [config.grpcHost, config.httpHost],
    hostname: hostname(),
    interfaceAddresses: interfaceAddresses(),
    extra: config.tlsSans,
  });
  return ensureOwnPki(config.dataDir, sans, logger);
}

export async function setUpSecurity(
  config: Config,
  deps: { sql: Sql; tokens: TokenStore; registry: Registry; logger: Logger },
): Promise<Security> {
  const log = deps.logger;
  const mode = securityMode(config);
  const reason = securityModeReason(config);
  if (mode === 'insecure') {
    log.warn(
      { security: mode, grpcHost: config.grpcHost, httpHost: config.httpHost },
      'INSECURE: --insecure-no-auth: no TLS and no authentication; anyone who reaches these ports can change the fleet policy. For labs only.',
    );
  } else
    log.info(
      { security: mode, reason },
      mode === 'tls' ? 'TLS and API tokens required on both ports' : 'loopback only, no TLS: local callers are trusted',
    );

  const verifier = new TokenVerifier(deps.tokens, config.authCacheTtlMs);
  await verifier.listen(deps.sql, log);
  const countFailure = authFailureCounter(deps.registry);
  const penalty = new PenaltyBox({ ...DEFAULT_PENALTY, maxMs: config.authPenaltyMaxMs });
  const auth = new Authenticator(mode, verifier, penalty, countFailure);

  let tlsFiles: TlsFiles | undefined;
  let adminTokenFile: string | undefined;
  let renewal: NodeJS.Timeout | undefined;
  try {
    if (mode === 'tls') {
      const paths = await tlsPaths(config, log);
      tlsFiles = new TlsFiles(paths, config.tlsReloadIntervalMs, log.child({ component: 'tls' }));
      tlsFiles.start();
      if (config.tlsCertFile === undefined) {
        // The own server certificate is renewed while running too (30 days before it expires); the reload picks it up.
        renewal = setInterval(() => {
          tlsPaths(config, log).catch((err) => log.error({ err }, 'renewing the server certificate failed'));
        }, OWN_CERT_CHECK_MS);
        renewal.unref();
      }
      adminTokenFile = await bootstrapAdminToken(deps.tokens, config.dataDir, log);
    }
  } catch (e) {
    if (renewal) clearInterval(renewal);
    tlsFiles?.stop();
    await verifier.stop();
    throw e;
  }
  const loopbackHttp = isLoopbackHost(config.httpHost);
  return {
    mode,
    tlsFiles,
    grpcCredentials: tlsFiles ? grpcServerCredentials(tlsFiles) : undefined,
    grpcInterceptor: grpcAuthInterceptor(auth, log.child({ component: 'auth' })),
    httpGuard: httpGuard({
      auth,
      allowedHosts: loopbackHttp ? allowedHostNames(config.httpHost, config.httpAllowedHosts) : undefined,
      onHostRefused: () => countFailure('HOST_NOT_ALLOWED'),
    }),
    adminTokenFile,
    countFailure,
    announce(grpcPort, httpPort) {
      // Only where this process keeps state of its own (embedded Postgres, own PKI): not in a shared default dir.
      if (config.databaseUrl !== undefined && !(mode === 'tls' && config.tlsCertFile === undefined)) return;
      const token = join(config.dataDir, ADMIN_TOKEN_FILE);
      try {
        writeLocalEndpoint(config.dataDir, {
          grpcPort,
          httpPort,
          tls: tlsFiles !== undefined,
          security: mode,
          caFile: tlsFiles?.paths.caFile,
          adminTokenFile: existsSync(token) ? token : undefined,
        });
      } catch (err) {
        log.warn({ err }, 'could not write control-plane.json for local clients');
      }
    },
    async stop() {
      if (renewal) clearInterval(renewal);
      tlsFiles?.stop();
      await verifier.stop();
    },
  };
}
