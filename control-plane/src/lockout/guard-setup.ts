// The lockout guard of one control-plane process, from its configuration:
// the I/O edge of lockout/ (the host's interface addresses for a wildcard
// bind, listen host names resolved once at start).
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { LockoutGuard, type PeerSource } from './lockout-guard.js';
import { staticProtectedEntries } from './protected-sources.js';

function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((a): a is NonNullable<typeof a> => a !== undefined)
    .map((a) => a.address);
}

async function resolveNames(hosts: readonly string[], logger: Logger): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const h of new Set(hosts.map((x) => x.trim().replace(/^\[|\]$/g, '')))) {
    if (h === '' || isIP(h)) continue;
    try {
      out.set(
        h,
        (await lookup(h, { all: true })).map((a) => a.address),
      );
    } catch (err) {
      logger.warn(
        { host: h, err: (err as Error).message },
        'lockout guard: the listen host name does not resolve; its addresses are not protected',
      );
    }
  }
  return out;
}

export async function createLockoutGuard(config: Config, peers: PeerSource, logger: Logger): Promise<LockoutGuard> {
  const entries = staticProtectedEntries({
    grpcHost: config.grpcHost,
    httpHost: config.httpHost,
    interfaceAddresses: interfaceAddresses(),
    resolved: await resolveNames([config.grpcHost, config.httpHost], logger),
    protectedCidrs: config.protectedCidrs,
  });
  logger.info({ protected: entries.map((e) => e.cidr) }, "lockout guard: protected addresses (and every agent's connect address)");
  return new LockoutGuard(entries, peers, { refreshMs: config.protectedRefreshMs, logger });
}
