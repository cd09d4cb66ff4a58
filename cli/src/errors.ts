// Exit codes and the error type every command throws.

export const ExitCode = {
  Ok: 0,
  /** Unexpected failure (server INTERNAL, a bug). */
  Failure: 1,
  /** Bad command line: unknown flag, missing argument, bad local input. */
  Usage: 2,
  /** The control plane rejected the request (invalid, duplicate, over a limit). */
  Rejected: 3,
  /** The rule or node does not exist. */
  NotFound: 4,
  /** The control plane cannot be reached or did not answer in time. */
  Unavailable: 5,
  /** No, an unknown, expired or revoked API token, or a role too low for the command. */
  Denied: 6,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue,
    /** Catalogue reason from the server's ErrorInfo, or a local one. */
    readonly reason: string,
  ) {
    super(message);
  }
}
