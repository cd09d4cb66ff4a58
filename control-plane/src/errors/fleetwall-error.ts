// The one error type the service layer throws: a catalogue reason, a message
// for humans (what is wrong and how to fix it) and string metadata for
// programs (copied into google.rpc.ErrorInfo.metadata).
import { CATALOGUE, type Reason } from './catalogue.js';

export class FleetwallError extends Error {
  override readonly name = 'FleetwallError';
  readonly metadata: Readonly<Record<string, string>>;

  constructor(
    readonly reason: Reason,
    message?: string,
    metadata: Record<string, string> = {},
  ) {
    super(message ?? CATALOGUE[reason].message);
    this.metadata = Object.freeze({ ...metadata });
  }

  get code(): number {
    return CATALOGUE[this.reason].code;
  }

  /** The same error with a prefix on the message, e.g. "requests[3]: ". */
  withPrefix(prefix: string, extra: Record<string, string> = {}): FleetwallError {
    const e = new FleetwallError(this.reason, `${prefix}${this.message}`, { ...this.metadata, ...extra });
    return e;
  }
}
