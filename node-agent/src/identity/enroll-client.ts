// The agent's enrollment calls, as kubeadm join does it:
//
//   1. GetCertificateAuthority over TLS that trusts nothing yet (anyone could
//      answer): keep only the CA certificates whose pin the operator gave
//      (--ca-cert-hash); none: refuse, naming the pins that were offered.
//   2. Enroll over TLS verified against exactly those CA certificates (a
//      server that cannot prove it holds a pinned CA's certificate gets
//      neither the join token nor the CSR).
//
// Errors are EnrollError: `retry` says whether trying again may help (the
// control plane was unreachable) or not (refused: a wrong pin, a used or
// expired token, ...).
import { type ChannelCredentials, type ChannelOptions, credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import {
  type EnrollResponse,
  EnrollmentServiceClient,
  type GetCertificateAuthorityResponse,
} from '../../../proto/gen/fleetwall/v1/enrollment_service.js';
import { ErrorInfo } from '../../../proto/gen/google/rpc/error_details.js';
import { Status } from '../../../proto/gen/google/rpc/status.js';
import { pinnedCertificates } from './ca-pin.js';

export class EnrollError extends Error {
  override readonly name = 'EnrollError';
  constructor(
    message: string,
    readonly retry: boolean,
    readonly reason = '',
  ) {
    super(message);
  }
}

const DEADLINE_MS = 15_000;

function reasonOf(err: ServiceError): string {
  const raw = err.metadata?.get('grpc-status-details-bin')?.[0];
  if (!raw || typeof raw === 'string') return '';
  try {
    for (const any of Status.decode(raw).details)
      if (any.typeUrl.endsWith('/google.rpc.ErrorInfo')) return ErrorInfo.decode(any.value).reason;
  } catch {
    // a malformed trailer must not hide the error
  }
  return '';
}

/** Whether a failed call is worth retrying (the control plane was not reached or not ready). */
export function retryable(err: ServiceError): boolean {
  return err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED || err.code === status.RESOURCE_EXHAUSTED;
}

export function toEnrollError(what: string, err: ServiceError): EnrollError {
  const reason = reasonOf(err);
  return new EnrollError(`${what}: ${err.details || err.message}${reason ? ` (${reason})` : ''}`, retryable(err), reason);
}

function call<T>(client: EnrollmentServiceClient, what: string, f: (cb: (e: ServiceError | null, r: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    f((e, r) => {
      client.close();
      if (e) reject(toEnrollError(what, e));
      else resolve(r);
    });
  });
}

/** Steps 1: the control plane's CA certificates that match `pins` (PEM), fetched without trusting the server. */
export async function fetchPinnedCa(address: string, pins: readonly string[], options: ChannelOptions): Promise<string> {
  // Trust nothing here: the answer is checked against the pins, and nothing secret is sent.
  const blind = credentials.createSsl(null, null, null, { rejectUnauthorized: false, checkServerIdentity: () => undefined });
  const client = new EnrollmentServiceClient(address, blind, options);
  const res = await call<GetCertificateAuthorityResponse>(client, `fetching the CA from ${address}`, (cb) =>
    client.getCertificateAuthority({}, new Metadata(), { deadline: Date.now() + DEADLINE_MS }, cb),
  );
  const { pem, seen } = pinnedCertificates(res.caBundlePem, pins);
  if (pem === '')
    throw new EnrollError(
      `refusing to enroll: the CA of the control plane at ${address} (${seen.join(', ') || 'no certificate'}) matches no --ca-cert-hash (${pins.join(', ')}). ` +
        'Check the pin `fleetwall enroll create` printed; a mismatch may also mean something between this node and the control plane is impersonating it.',
      false,
      'CA_PIN_MISMATCH',
    );
  return pem;
}

/** Step 2: Enroll over TLS verified against `caPem`. */
export async function enroll(
  address: string,
  caPem: string,
  options: ChannelOptions,
  req: { joinToken: string; nodeName: string; csrPem: string },
): Promise<EnrollResponse> {
  const client = new EnrollmentServiceClient(address, credentials.createSsl(Buffer.from(caPem)), options);
  return call<EnrollResponse>(client, `enrolling with the control plane at ${address}`, (cb) =>
    client.enroll(req, new Metadata(), { deadline: Date.now() + DEADLINE_MS }, cb),
  );
}

/** TLS credentials for the node's calls: trusting `caPem`, presenting its certificate. */
export function nodeCredentials(caPem: string, keyPem: string, certPem: string): ChannelCredentials {
  return credentials.createSsl(Buffer.from(caPem), Buffer.from(keyPem), Buffer.from(certPem));
}
