// One side of the comparison: a control plane (plaintext, or TLS with API
// tokens), the bench's API client to it, its simulated fleet, and the
// create burst the rate cases use. With TLS the API client dials TLS with
// the token and counts its handshakes (checkServerIdentity runs once per
// handshake).
import { checkServerIdentity } from 'node:tls';
import { credentials } from '@grpc/grpc-js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { RuleServiceClient } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { bearerInterceptor, type ChildControlPlane, connectClients } from '../../test/support/control-plane.js';
import { rulesApi } from '../../test/support/rule-fixtures.js';
import type { Access } from './enroll-agents.js';
import type { Worker } from './fleet.js';
import type { SideName } from './rounds.js';

export interface Side {
  readonly name: SideName;
  /** Appended to every metric name of this side: "" or "_tls". */
  readonly suffix: string;
  readonly cp: ChildControlPlane;
  readonly access: Access | undefined;
  readonly api: ReturnType<typeof rulesApi>;
  /** Its fleet's worker processes (stopped by whoever made the side). */
  readonly workers: Worker[];
  /** First octet of the addresses its rules are made of (each control plane has its own database anyway). */
  readonly octet: number;
  /** TLS handshakes of the API client so far (0 for plaintext). */
  clientHandshakes(): number;
  /** The next address for a rule of this side: unique across its rounds. */
  nextCidr(): string;
  close(): void;
}

export function openSide(name: SideName, cp: ChildControlPlane, access?: Access): Side {
  let handshakes = 0;
  let n = 0;
  const rules = access
    ? new RuleServiceClient(
        cp.target,
        credentials.createSsl(access.ca, null, null, {
          checkServerIdentity: (host, cert) => {
            handshakes++;
            return checkServerIdentity(host, cert);
          },
        }),
        { interceptors: [bearerInterceptor(access.token)] },
      )
    : connectClients(cp.target).rules;
  const octet = name === 'plain' ? 11 : 21;
  return {
    name,
    suffix: name === 'plain' ? '' : '_tls',
    cp,
    access,
    api: rulesApi(rules, 'bench'),
    workers: [],
    octet,
    clientHandshakes: () => handshakes,
    nextCidr() {
      const i = n++;
      return `${octet}.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`;
    },
    close: () => rules.close(),
  };
}

const now = () => performance.timeOrigin + performance.now();

/** `concurrency` callers each issuing single-rule CreateRule calls back to back for `seconds`. */
export async function createBurst(
  side: Side,
  concurrency: number,
  seconds: number,
): Promise<{ made: number; last: bigint; elapsed: number }> {
  let made = 0;
  let last = 0n;
  const t = now();
  const stopAt = t + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (now() < stopAt) {
        const r = await side.api.create({ rule: { cidr: side.nextCidr(), action: Action.ACTION_DENY } });
        made++;
        if (r.revision > last) last = r.revision;
      }
    }),
  );
  return { made, last, elapsed: (now() - t) / 1000 };
}
