// Where the lockout guard's static protected entries come from (pure: the
// caller passes the interface addresses and resolved names in):
//
//   loopback     127.0.0.0/8 and ::1/128, always
//   listen       the gRPC and HTTP listen addresses; for a wildcard bind
//                (0.0.0.0, ::) every address of this host
//   management   the operator's --protected-cidrs (FLEETWALL_PROTECTED_CIDRS)
//
// The addresses agents connect from are the guard's dynamic part
// (lockout-guard.ts, from the nodes table).
import { CidrError, type Address, type Prefix, parseAddress, parseCidr } from '../../../common/src/cidr.js';
import { type ProtectedEntry, protectedEntry } from './protected-set.js';

export interface ProtectedSourceInputs {
  readonly grpcHost: string;
  readonly httpHost: string;
  /** os.networkInterfaces() addresses (used for a wildcard bind). */
  readonly interfaceAddresses: readonly string[];
  /** Addresses a listen host name resolved to (by name); IP literals need none. */
  readonly resolved: ReadonlyMap<string, readonly string[]>;
  readonly protectedCidrs: readonly string[];
}

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]', '']);

/** An address as a host prefix; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address. */
export function hostPrefix(a: Address): Prefix {
  const b = a.bytes;
  if (a.family === 6 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return { family: 4, bytes: b.slice(12), len: 32 };
  }
  return { family: a.family, bytes: b, len: a.family === 4 ? 32 : 128 };
}

/** A text address ("192.0.2.1", "fe80::1%eth0", "[::1]") as a host prefix, or undefined. */
export function addressPrefix(text: string): Prefix | undefined {
  try {
    return hostPrefix(
      parseAddress(
        text
          .trim()
          .replace(/^\[|\]$/g, '')
          .replace(/%.*$/, ''),
      ),
    );
  } catch (e) {
    if (e instanceof CidrError) return undefined;
    throw e;
  }
}

export const LOOPBACK: readonly ProtectedEntry[] = Object.freeze([
  protectedEntry(parseCidr('127.0.0.0/8'), 'loopback', 'loopback, always protected'),
  protectedEntry(parseCidr('::1/128'), 'loopback', 'loopback, always protected'),
]);

/** The static entries: loopback, listen addresses, management networks. */
export function staticProtectedEntries(i: ProtectedSourceInputs): ProtectedEntry[] {
  const out: ProtectedEntry[] = [...LOOPBACK];
  for (const [port, host, flag] of [
    ['gRPC', i.grpcHost, '--grpc-host'],
    ['HTTP', i.httpHost, '--http-host'],
  ] as const) {
    const h = host.trim();
    if (WILDCARDS.has(h)) {
      for (const a of i.interfaceAddresses) {
        const p = addressPrefix(a);
        if (p)
          out.push(
            protectedEntry(
              p,
              'listen',
              `an address of the control plane's host, where its ${port} port listens on every address (${flag} ${h || '0.0.0.0'})`,
            ),
          );
      }
      continue;
    }
    const literal = addressPrefix(h);
    const addrs = literal ? [literal] : (i.resolved.get(h) ?? []).map(addressPrefix).filter((p): p is Prefix => p !== undefined);
    for (const p of addrs) out.push(protectedEntry(p, 'listen', `the control plane's ${port} listen address (${flag} ${h})`));
  }
  for (const c of i.protectedCidrs) {
    out.push(protectedEntry(parseCidr(c), 'management', 'a management network (--protected-cidrs / FLEETWALL_PROTECTED_CIDRS)'));
  }
  return dedupe(out);
}

/** One entry per CIDR (the first reason given). */
export function dedupe(entries: readonly ProtectedEntry[]): ProtectedEntry[] {
  const seen = new Set<string>();
  return entries.filter((e) => !seen.has(e.cidr) && seen.add(e.cidr) !== undefined);
}
