// One side of the comparison: a control plane (plaintext, or TLS with API
// tokens), the bench's API client to it, its simulated fleet, and the
// bursts of calls the rate cases use: single-rule creates, and health checks
// (grpc.health.v1 Check: no token, no store, only the transport; on its own
// connection). With TLS the clients dial TLS, the API client with the token,
// and count their handshakes (checkServerIdentity runs once per handshake).
import { checkServerIdentity } from 'node:tls';
import { type ChannelCredentials, credentials, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
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
  /** One grpc.health.v1 Check call (the server's overall status). */
  healthCheck(): Promise<void>;
  /** The next address for a rule of this side: unique across its rounds. */
  nextCidr(): string;
  close(): void;
}

const raw = (b: Buffer) => b;
const HealthClient = makeGenericClientConstructor(
  {
    check: {
      path: '/grpc.health.v1.Health/Check',
      requestStream: false,
      responseStream: false,
      requestSerialize: raw,
      requestDeserialize: raw,
      responseSerialize: raw,
      responseDeserialize: raw,
    },
  },
  'grpc.health.v1.Health',
) as unknown as new (
  target: string,
  creds: ChannelCredentials,
  opts: object,
) => { check(req: Buffer, cb: (err: ServiceError | null) => void): void; close(): void };
const EMPTY = Buffer.alloc(0);

export function openSide(name: SideName, cp: ChildControlPlane, access?: Access): Side {
  let handshakes = 0;
  let n = 0;
  const tls =
    access &&
    credentials.createSsl(access.ca, null, null, {
      checkServerIdentity: (host, cert) => {
        handshakes++;
        return checkServerIdentity(host, cert);
      },
    });
  const rules = tls
    ? new RuleServiceClient(cp.target, tls, { interceptors: [bearerInterceptor(access.token)] })
    : connectClients(cp.target).rules;
  // Its own connection (a local subchannel pool), so that its windows never share one with the creates;
  // its handshake is not the API client's.
  const health = new HealthClient(cp.target, access ? credentials.createSsl(access.ca) : credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
  });
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
    healthCheck: () => new Promise<void>((resolve, reject) => health.check(EMPTY, (err) => (err ? reject(err) : resolve()))),
    nextCidr() {
      const i = n++;
      return `${octet}.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`;
    },
    close: () => {
      rules.close();
      health.close();
    },
  };
}

const now = () => performance.timeOrigin + performance.now();

export interface Burst {
  readonly made: number;
  /** The highest revision a call returned (0 for calls without one). */
  readonly last: bigint;
  readonly elapsed: number;
}
export type BurstOf = (side: Side, concurrency: number, seconds: number) => Promise<Burst>;

/** `concurrency` callers each issuing `call` back to back for `seconds`. */
async function burst(concurrency: number, seconds: number, call: () => Promise<bigint>): Promise<Burst> {
  let made = 0;
  let last = 0n;
  const t = now();
  const stopAt = t + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (now() < stopAt) {
        const r = await call();
        made++;
        if (r > last) last = r;
      }
    }),
  );
  return { made, last, elapsed: (now() - t) / 1000 };
}

/** Single-rule CreateRule calls. */
export const createBurst: BurstOf = (side, concurrency, seconds) =>
  burst(
    concurrency,
    seconds,
    async () => (await side.api.create({ rule: { cidr: side.nextCidr(), action: Action.ACTION_DENY } })).revision,
  );

/** Health checks: the transport alone. */
export const healthBurst: BurstOf = (side, concurrency, seconds) =>
  burst(concurrency, seconds, async () => {
    await side.healthCheck();
    return 0n;
  });
