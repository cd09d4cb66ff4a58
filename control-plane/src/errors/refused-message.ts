// Requests the deserializer refuses: larger than FLEETWALL_MAX_MESSAGE_BYTES,
// or bytes that do not decode as the method's request type. The deserializer
// hands one of these markers to the handler instead of the message, which
// turns it into a catalogued error with an ErrorInfo (RESOURCE_EXHAUSTED
// MESSAGE_TOO_LARGE, INVALID_ARGUMENT MALFORMED_MESSAGE) - grpc-js alone
// would answer a bare status, INTERNAL for undecodable bytes.
import { echo } from '../../../common/src/echo.js';
import { FleetwallError } from './fleetwall-error.js';

export class TooLargeMessage {
  constructor(
    readonly bytes: number,
    readonly max: number,
  ) {}
}

export class MalformedMessage {
  constructor(
    readonly bytes: number,
    readonly why: string,
  ) {}
}

export type RefusedMessage = TooLargeMessage | MalformedMessage;

export function isRefused(m: unknown): m is RefusedMessage {
  return m instanceof TooLargeMessage || m instanceof MalformedMessage;
}

export function tooLarge(m: TooLargeMessage): FleetwallError {
  return new FleetwallError(
    'MESSAGE_TOO_LARGE',
    `the request is ${m.bytes} bytes; this control plane accepts at most ${m.max} (FLEETWALL_MAX_MESSAGE_BYTES): split it into smaller messages or batches`,
    { bytes: String(m.bytes), max_bytes: String(m.max) },
  );
}

/** The catalogued error for a refused request. */
export function refusal(m: RefusedMessage): FleetwallError {
  if (m instanceof TooLargeMessage) return tooLarge(m);
  return new FleetwallError(
    'MALFORMED_MESSAGE',
    `the request (${m.bytes} bytes) is not a valid protobuf encoding of this method's request type: ${echo(m.why, 80)}`,
    { bytes: String(m.bytes) },
  );
}
