// Fetch and parse one list: the body streams from list-source.ts into the
// blocklist parser (common/src/blocklist) and into an EntrySet, minus the
// prefixes the import guard refuses (local ranges of a deny list) and those
// the lockout guard protects (reason LOCKOUT_PROTECTED, counted with the
// local ones: a list has no force). Returns
// the set with what the parse saw, or why there is no set (a failed fetch, a
// file that cannot be read as the list says). No database.
//
// Plain IPv4 lines (nearly all of a large list) come from the parser as
// numbers (its V4Sink) and are checked by both guards as numbers: no object
// per line. Only a refused one is made a Prefix, for its message.
import { BlocklistError } from '../../../common/src/blocklist/errors.js';
import { v4KeyAddress, v4KeyPrefix } from '../../../common/src/blocklist/fast-ipv4.js';
import type { V4Sink } from '../../../common/src/blocklist/parser.js';
import { hasLocalOverlapV4 } from '../../../common/src/blocklist/special-ranges.js';
import type { LineResult } from '../../../common/src/blocklist/types.js';
import { formatPrefix, type Prefix } from '../../../common/src/cidr.js';
import type { ImportLineError } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { blocklistParser, formatOfSummary } from '../rules/blocklist-options.js';
import { guardIsOpen, type LockoutContext, prefixCheck } from '../services/import-guard.js';
import { EntrySet } from './entry-set.js';
import { FetchFailure, type FetchOptions, openList, type Validators } from './list-source.js';
import type { ListSpec } from './list-spec.js';

/** Lines of each kind kept for the list's status. */
const REPORTED_LINES = 20;
/**
 * The parser is fed at most this much text at a time: its results for one
 * piece are handled before the next, so little is alive when the young
 * generation is collected (64 KiB pieces cost 4x the CPU in GC, measured on
 * a million lines).
 */
const PIECE = 8192;

export interface ParseStats {
  readonly lines: number;
  /** Lines that gave prefixes, and invalid lines: the share of invalid is invalid / (entries + invalid). */
  readonly entries: number;
  readonly invalid: number;
  readonly skippedLocal: number;
  readonly format: number;
  readonly formatDetected: boolean;
  readonly invalidLines: ImportLineError[];
  readonly localLines: ImportLineError[];
}

export type Loaded =
  | { readonly kind: 'not-modified'; readonly httpStatus: number }
  | {
      readonly kind: 'parsed';
      readonly httpStatus: number;
      readonly validators: Validators;
      readonly entries: EntrySet;
      readonly stats: ParseStats;
    }
  | { readonly kind: 'fetch-failed'; readonly httpStatus: number; readonly message: string }
  | { readonly kind: 'parse-failed'; readonly httpStatus: number; readonly message: string; readonly error: BlocklistError };

/** `lockout`: the lockout guard's checker and direction for an enforce-mode deny list. */
export async function loadList(spec: ListSpec, validators: Validators, fetch: FetchOptions, lockout?: LockoutContext): Promise<Loaded> {
  let opened: Awaited<ReturnType<typeof openList>>;
  try {
    opened = await openList(spec.url, validators, fetch);
  } catch (e) {
    if (e instanceof FetchFailure) return { kind: 'fetch-failed', httpStatus: e.httpStatus, message: e.message };
    throw e;
  }
  if (opened.kind === 'not-modified') return opened;
  const parser = blocklistParser({ format: spec.format, column: spec.column }, 'list');
  // Local ranges, then the lockout guard: a list holds what either refuses (no force).
  const guard = { action: spec.action, allowPrivate: spec.allowPrivate };
  const open = guardIsOpen(guard);
  const refuse = prefixCheck(guard, lockout);
  const entries = new EntrySet();
  const invalidLines: ImportLineError[] = [];
  /**
   * Refused lines: within a piece the sink's come before the piece's
   * results, so all of a piece's are kept, then sorted and cut to the first
   * REPORTED_LINES (after which no later line can be among them).
   */
  let localLines: ImportLineError[] = [];
  let localFull = false;
  let skippedLocal = 0;
  const prefix = (p: Prefix, line: number) => {
    const refusal = refuse(p, 'entry');
    if (refusal) {
      skippedLocal++;
      if (!localFull) {
        localLines.push({ lineNumber: BigInt(line), line: formatPrefix(p), message: refusal.message, reason: refusal.reason });
      }
    } else entries.add(p);
  };
  const v4: V4Sink = (key, line) => {
    const addr = v4KeyAddress(key);
    const len = key - addr * 64;
    if ((!open && hasLocalOverlapV4(addr, len)) || lockout?.checker.hitsV4(addr, len)) prefix(v4KeyPrefix(key), line);
    else entries.addV4Key(key);
  };
  const take = (results: readonly LineResult[]) => {
    for (const r of results) {
      if (!r.ok) {
        if (invalidLines.length < REPORTED_LINES) {
          invalidLines.push({ lineNumber: BigInt(r.line), line: r.text, message: r.message, reason: r.reason });
        }
        continue;
      }
      for (const p of r.prefixes) prefix(p, r.line);
    }
    if (!localFull && localLines.length > 1) {
      localLines.sort((a, b) => Number(a.lineNumber - b.lineNumber));
      if (localLines.length >= REPORTED_LINES) {
        localLines = localLines.slice(0, REPORTED_LINES);
        localFull = true;
      }
    }
  };
  try {
    for await (const text of opened.text) {
      for (let i = 0; i < text.length; i += PIECE) take(parser.pushText(text.length <= PIECE ? text : text.slice(i, i + PIECE), v4));
    }
    take(parser.end(v4).results);
  } catch (e) {
    if (e instanceof FetchFailure) return { kind: 'fetch-failed', httpStatus: e.httpStatus || opened.httpStatus, message: e.message };
    if (e instanceof BlocklistError) {
      return { kind: 'parse-failed', httpStatus: opened.httpStatus, message: `line ${e.line}: ${e.message}`, error: e };
    }
    throw e;
  }
  const summary = parser.end().summary;
  const f = formatOfSummary(summary);
  return {
    kind: 'parsed',
    httpStatus: opened.httpStatus,
    validators: opened.validators,
    entries: entries.seal(),
    stats: {
      lines: summary.lines,
      entries: summary.entries,
      invalid: summary.errors,
      skippedLocal,
      format: f.format,
      formatDetected: f.formatDetected,
      invalidLines,
      localLines,
    },
  };
}
