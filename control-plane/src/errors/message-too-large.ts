// A request larger than FLEETWALL_MAX_MESSAGE_BYTES: the deserializer hands
// this marker to the handler instead of the message, which turns it into a
// catalogued RESOURCE_EXHAUSTED MESSAGE_TOO_LARGE (with ErrorInfo).
import { FleetwallError } from './fleetwall-error.js';

export class TooLargeMessage {
  constructor(
    readonly bytes: number,
    readonly max: number,
  ) {}
}

export function tooLarge(m: TooLargeMessage): FleetwallError {
  return new FleetwallError(
    'MESSAGE_TOO_LARGE',
    `the request is ${m.bytes} bytes; this control plane accepts at most ${m.max} (FLEETWALL_MAX_MESSAGE_BYTES): split it into smaller messages or batches`,
    { bytes: String(m.bytes), max_bytes: String(m.max) },
  );
}
