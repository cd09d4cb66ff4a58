// The one mapper from a thrown error to a gRPC status: catalogued errors keep
// their code, message and reason (as google.rpc.ErrorInfo in the
// grpc-status-details-bin trailer); Postgres outages and conflicts map to
// UNAVAILABLE / ABORTED; anything else is INTERNAL "internal error", logged
// with its stack and never shown to the caller.
import { Metadata, type StatusObject } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CATALOGUE } from './catalogue.js';
import { FleetwallError } from './fleetwall-error.js';
import { encodeStatus, errorInfoStatus, STATUS_DETAILS_KEY } from './status-details.js';

const PG_UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '08000', '08003', '08006', '08001', '08004', '53300']);
const NET_UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
]);

/** Turns known infrastructure errors into catalogued ones; others stay as they are. */
export function classifyError(err: unknown): FleetwallError | undefined {
  if (err instanceof FleetwallError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (PG_UNAVAILABLE_CODES.has(code) || NET_UNAVAILABLE_CODES.has(code)) return new FleetwallError('STORE_UNAVAILABLE');
    if (code === '40001' || code === '40P01') return new FleetwallError('CONFLICT_RETRY');
  }
  return undefined;
}

export function toGrpcStatus(err: unknown, logger: Logger, method: string): Partial<StatusObject> {
  let fe = classifyError(err);
  if (!fe) {
    logger.error({ err, method }, 'internal error');
    fe = new FleetwallError('INTERNAL');
  } else if (fe.reason === 'STORE_UNAVAILABLE' || fe.reason === 'CONFLICT_RETRY') {
    logger.warn({ err, method }, fe.message);
  }
  const code = CATALOGUE[fe.reason].code;
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, encodeStatus(errorInfoStatus(code, fe.message, fe.reason, { ...fe.metadata })));
  return { code, details: fe.message, metadata };
}
