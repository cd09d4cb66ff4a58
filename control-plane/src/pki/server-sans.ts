// The names the control plane's own server certificate carries: loopback,
// the host name, the listen addresses (every interface address for a
// wildcard bind) and the operator's --tls-san list. Pure.
import { isIP } from 'node:net';
import type { SubjectAltNames } from './certificate-authority.js';

export interface SanInputs {
  readonly hosts: readonly string[];
  readonly hostname: string;
  /** os.networkInterfaces() addresses. */
  readonly interfaceAddresses: readonly string[];
  readonly extra: readonly string[];
}

const WILDCARDS = new Set(['0.0.0.0', '::', '[::]', '']);

export function serverSans(i: SanInputs): SubjectAltNames {
  const dns = new Set<string>(['localhost']);
  const ips = new Set<string>(['127.0.0.1', '::1']);
  const add = (v: string) => {
    const h = v.trim().replace(/^\[|\]$/g, '');
    if (h === '') return;
    if (isIP(h)) ips.add(h.toLowerCase());
    else dns.add(h.toLowerCase());
  };
  if (i.hostname) add(i.hostname);
  for (const h of i.hosts) {
    if (WILDCARDS.has(h.trim())) for (const a of i.interfaceAddresses) add(a.replace(/%.*$/, ''));
    else add(h);
  }
  for (const e of i.extra) add(e);
  return { dns: [...dns].sort(), ips: [...ips].sort() };
}

/** Names of `want` a certificate with `have` lacks. */
export function missingSans(have: SubjectAltNames, want: SubjectAltNames): string[] {
  const hd = new Set(have.dns.map((d) => d.toLowerCase()));
  const hi = new Set(have.ips.map(canonicalIp));
  return [...want.dns.filter((d) => !hd.has(d.toLowerCase())), ...want.ips.filter((a) => !hi.has(canonicalIp(a)))];
}

function canonicalIp(a: string): string {
  if (isIP(a) !== 6) return a;
  // Expand, so "::1" and "0:0:0:0:0:0:0:1" compare equal.
  const [head, tail = ''] = a.toLowerCase().split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = a.includes('::') ? Array(8 - h.length - t.length).fill('0') : [];
  return [...h, ...fill, ...t].map((x) => x.replace(/^0+(?=.)/, '')).join(':');
}
