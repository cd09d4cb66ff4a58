// The blocklist parser's one fatal error: the whole file cannot be read as
// asked (unknown CSV column, no address column, bad options). Problems with
// single lines are results (LineError), never thrown.

export type BlocklistErrorReason = 'UNKNOWN_COLUMN' | 'NO_ADDRESS_COLUMN' | 'INVALID_OPTION';

export class BlocklistError extends Error {
  override readonly name = 'BlocklistError';
  constructor(
    readonly reason: BlocklistErrorReason,
    message: string,
    /** The line the problem was found on (0 for options). */
    readonly line: number,
  ) {
    super(message);
  }
}
