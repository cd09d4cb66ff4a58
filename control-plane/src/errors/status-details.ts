// google.rpc.Status with an ErrorInfo detail, as carried in the
// `grpc-status-details-bin` trailer: building it (server) and reading it back
// (clients, tests).
import type { Metadata } from '@grpc/grpc-js';
import { ErrorInfo } from '../../../proto/gen/google/rpc/error_details.js';
import { Status } from '../../../proto/gen/google/rpc/status.js';
import { ERROR_DOMAIN } from './catalogue.js';

export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
export const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';

export function errorInfoStatus(code: number, message: string, reason: string, metadata: Record<string, string>): Status {
  const info = ErrorInfo.encode({ reason, domain: ERROR_DOMAIN, metadata }).finish();
  return { code, message, details: [{ typeUrl: ERROR_INFO_TYPE_URL, value: Buffer.from(info) }] };
}

export function encodeStatus(s: Status): Buffer {
  return Buffer.from(Status.encode(s).finish());
}

/** The ErrorInfo in a google.rpc.Status, if any. */
export function errorInfoOfStatus(s: Status): ErrorInfo | undefined {
  for (const any of s.details) {
    if (any.typeUrl.endsWith('/google.rpc.ErrorInfo')) return ErrorInfo.decode(any.value);
  }
  return undefined;
}

/** The google.rpc.Status a gRPC error carried in its trailers, if any. */
export function statusOfMetadata(md: Metadata | undefined): Status | undefined {
  const raw = md?.get(STATUS_DETAILS_KEY)?.[0];
  if (!raw || typeof raw === 'string') return undefined;
  try {
    return Status.decode(raw);
  } catch {
    return undefined;
  }
}

/** The ErrorInfo of a gRPC error (ServiceError.metadata), if the server sent one. */
export function errorInfoOf(err: { metadata?: Metadata }): ErrorInfo | undefined {
  const s = statusOfMetadata(err.metadata);
  return s ? errorInfoOfStatus(s) : undefined;
}
