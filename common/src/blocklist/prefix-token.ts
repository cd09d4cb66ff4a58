// One address or CIDR token to one canonical prefix, with the host-bits policy
// and IPv4-mapped addresses read as IPv4. The CIDR grammar is common/src/cidr.ts's.
import { CidrError, parseCidr, unmapPrefix } from '../cidr.js';
import { type LineOutcome, lineError } from './line-outcome.js';
import type { HostBitsPolicy } from './types.js';

export function parsePrefixToken(token: string, hostBits: HostBitsPolicy): LineOutcome {
  let p: ReturnType<typeof parseCidr>;
  try {
    p = parseCidr(token, { unmap: false });
  } catch (e) {
    if (!(e instanceof CidrError)) throw e;
    if (e.reason === 'HOST_BITS_SET' && hostBits === 'mask' && e.canonical !== undefined) {
      p = parseCidr(e.canonical, { unmap: false });
    } else {
      return lineError(e.reason, e.message, e.canonical);
    }
  }
  const v4 = unmapPrefix(p);
  return v4 ? { kind: 'prefixes', prefixes: [v4], unmapped: true } : { kind: 'prefixes', prefixes: [p], unmapped: false };
}
