// How this control plane decides whom to trust, from its configuration
// (issue 15, "safe by default"). Pure.
//
//   loopback-trust  no TLS configured and both ports bound to loopback: plain
//                   gRPC/HTTP, every caller is the local admin (`local:loopback`)
//                   unless it presents a token (which is then checked)
//   tls             TLS on both ports and an API token on every call (node
//                   identity for Sync: auth/sync-identity.ts); chosen by any
//                   non-loopback bind, by --tls, or by operator-given certificates
//   insecure        --insecure-no-auth: plain, no authentication, any bind;
//                   for labs, warned at every start and shown on /healthz
import { isIP } from 'node:net';

export type SecurityMode = 'loopback-trust' | 'tls' | 'insecure';

export interface SecuritySettings {
  readonly grpcHost: string;
  readonly httpHost: string;
  readonly tls: boolean;
  readonly insecureNoAuth: boolean;
  readonly tlsCertFile: string | undefined;
}

/** A listen address that only this host can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
  return false;
}

export function securityMode(s: SecuritySettings): SecurityMode {
  if (s.insecureNoAuth) return 'insecure';
  if (s.tls || s.tlsCertFile !== undefined) return 'tls';
  return isLoopbackHost(s.grpcHost) && isLoopbackHost(s.httpHost) ? 'loopback-trust' : 'tls';
}

/** Why the mode is what it is, for the start-up log. */
export function securityModeReason(s: SecuritySettings): string {
  if (s.insecureNoAuth) return '--insecure-no-auth';
  if (s.tls) return '--tls';
  if (s.tlsCertFile !== undefined) return '--tls-cert';
  const open = [s.grpcHost, s.httpHost].filter((h) => !isLoopbackHost(h));
  return open.length > 0 ? `bound to ${[...new Set(open)].join(', ')} (not loopback)` : 'bound to loopback only, no TLS configured';
}

/** The Host header names a loopback-bound HTTP server answers (DNS rebinding guard). */
export function allowedHostNames(httpHost: string, extra: readonly string[]): ReadonlySet<string> {
  const names = new Set(['localhost', '127.0.0.1', '::1', normalizeHostName(httpHost)]);
  for (const e of extra) names.add(normalizeHostName(e));
  return names;
}

/** "LocalHost:8080" -> "localhost", "[::1]:8080" -> "::1", "127.0.0.1" -> "127.0.0.1". */
export function normalizeHostName(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(1, end) : h;
  }
  if (isIP(h) === 6) return h;
  const colon = h.lastIndexOf(':');
  return (colon >= 0 ? h.slice(0, colon) : h).replace(/\.$/, '');
}
