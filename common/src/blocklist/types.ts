// The public shapes of the blocklist parser: options, per-line results,
// the summary, and the one fatal error. Pure types, no logic.
import type { Prefix } from '../cidr.js';

/**
 * - `plain`: one address or CIDR per line; anything after the first whitespace
 *   or `;` is ignored (Spamhaus DROP, ipsum, blocklist.de, FireHOL sets).
 *   `a-b` ranges are also read (they cannot be mistaken for anything else).
 * - `range`: as plain, and a line of two addresses `start end` is a range.
 * - `jsonl`: one JSON object per line with a `cidr` or `ip` field (Spamhaus JSON).
 * - `csv`: comma-separated with a header line; one named column holds the address.
 */
export type BlocklistFormat = 'plain' | 'range' | 'jsonl' | 'csv';

/**
 * What a CIDR with host bits set (10.1.2.3/8) does:
 * - `reject` (default): an error naming the canonical form, as `parseCidr` does.
 *   The list may mean the host or the network; guessing either is wrong for someone.
 * - `mask`: the network (10.0.0.0/8). This WIDENS the entry: opt in only for lists
 *   known to write networks this way.
 */
export type HostBitsPolicy = 'reject' | 'mask';

export interface BlocklistOptions {
  /** Default `auto`: detected from the first data lines. */
  readonly format?: BlocklistFormat | 'auto';
  /**
   * CSV: the header of the column holding the address (exact, else
   * case-insensitive). JSON lines: the field holding it (default `cidr`, then `ip`).
   * Given with `format: 'auto'`, the file must be CSV or JSON lines.
   */
  readonly column?: string;
  readonly hostBits?: HostBitsPolicy;
  /** Longer lines are reported as LINE_TOO_LONG and never held whole. Default 4096. */
  readonly maxLineLength?: number;
}

export type LineErrorReason =
  | 'INVALID_CIDR'
  | 'INVALID_ADDRESS'
  | 'HOST_BITS_SET'
  | 'INVALID_RANGE'
  | 'INVALID_JSON'
  | 'MISSING_FIELD'
  | 'INVALID_CSV'
  | 'LINE_TOO_LONG'
  | 'NUL_BYTE';

/** A data line that gave prefixes: one for an address or CIDR, the exact cover for a range. */
export interface LinePrefixes {
  readonly line: number;
  readonly ok: true;
  /** Canonical (host bits zero), in address order for a range. */
  readonly prefixes: readonly Prefix[];
  /** True if an IPv4-mapped IPv6 address (::ffff:a.b.c.d) was read as its IPv4 form. */
  readonly unmapped: boolean;
}

export interface LineError {
  readonly line: number;
  readonly ok: false;
  readonly reason: LineErrorReason;
  readonly message: string;
  /** The line, cut to 200 characters, NUL shown as \0. */
  readonly text: string;
  /** For HOST_BITS_SET: the canonical form, as `CidrError.canonical`. */
  readonly canonical?: string;
}

/** Lines that carry nothing (blank, comments, the CSV header, JSON metadata) give no result. */
export type LineResult = LinePrefixes | LineError;

export interface BlocklistSummary {
  readonly format: BlocklistFormat;
  /** `option`: forced; `detected`: read from the data lines; `default`: no data line to read (plain). */
  readonly formatSource: 'option' | 'detected' | 'default';
  /** CSV: the header of the column read. JSON lines: the field, when one was named. */
  readonly column?: string;
  readonly lines: number;
  /** Lines that gave prefixes. */
  readonly entries: number;
  readonly prefixes: number;
  readonly errors: number;
  /** Blank, comment, CSV header and JSON metadata lines. */
  readonly skipped: number;
  /** Entries that were IPv4-mapped IPv6 and were read as IPv4. */
  readonly unmapped: number;
}
