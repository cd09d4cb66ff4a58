// ImportRules: a header (shared settings), then chunks of lines in one of the
// formats public blocklists use (common/src/blocklist: plain, ranges, JSON
// lines, CSV; header.format, detected when unset). Lines are parsed as they
// arrive; duplicates (within the list or of stored rules with the same
// direction and selector) are counted and skipped; invalid lines are reported
// with their numbers; in a deny list, lines overlapping local ranges are
// reported and skipped unless header.allow_private (import-guard.ts). The
// valid lines are committed as one revision when the stream ends, or nothing
// is stored if header.atomic is set and any line is invalid. More than the
// configured number of lines: IMPORT_TOO_LARGE, nothing stored. A file that
// cannot be read as asked (an unknown column): UNKNOWN_COLUMN, nothing stored.
// A deny line the lockout guard refuses (it would drop traffic of a protected
// address) is reported like an invalid line, reason LOCKOUT_PROTECTED, and
// the rest is imported; an import has no force.
import type { Sql } from 'postgres';
import type { LineResult } from '../../../common/src/blocklist/types.js';
import { formatPrefix } from '../../../common/src/cidr.js';
import type {
  ImportLineError,
  ImportRulesChunk,
  ImportRulesHeader,
  ImportRulesResponse,
} from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { blocklistFailure, blocklistParser, formatName, formatOfSummary } from '../rules/blocklist-options.js';
import { directionOrDefault, modeOrDefault, policyDirection, requireAction } from '../rules/enums.js';
import { selectorKey, validateSelector } from '../rules/selector.js';
import { checkComment, checkMonitorOnAllow, expiryFromTtl, type ValidationLimits } from '../rules/validate.js';
import { type BulkHandoff, streamImport } from '../store/rule-import.js';
import type { Logger } from 'pino';
import type { RuleStore } from '../store/rule-store.js';
import type { CallContext } from './call-context.js';
import { type GuardContext, guardIsOpen, guardPrefix } from './import-guard.js';
import { Action, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import { type LockoutChecker, type LockoutGuard, lockoutError } from '../lockout/lockout-guard.js';

export interface ImportDeps {
  readonly sql: Sql;
  readonly store: RuleStore;
  readonly limits: ValidationLimits & { readonly maxImportLines: number };
  readonly now: () => Date;
  readonly handoff?: BulkHandoff;
  readonly logger?: Logger;
  /** The lockout guard: a deny line that would drop protected traffic is refused as a line. */
  readonly guard?: LockoutGuard;
}

const MAX_REPORTED_INVALID = 1000;

function validateHeader(h: ImportRulesHeader, limits: ValidationLimits) {
  const action = requireAction(h.action, 'header.action');
  const direction = directionOrDefault(h.direction, 'header.direction');
  const mode = modeOrDefault(h.mode, 'header.mode');
  checkMonitorOnAllow(action, mode, 'header');
  const selector = validateSelector(h.selector, 'header.selector');
  checkComment(h.comment, limits, 'header.comment');
  if (h.ttl) expiryFromTtl(h.ttl, new Date(), 'header.ttl');
  return { action, direction, mode, selector, selectorKey: selectorKey(selector), comment: h.comment };
}

export async function importRules(
  header: ImportRulesHeader,
  chunks: AsyncIterable<ImportRulesChunk>,
  ctx: CallContext,
  deps: ImportDeps,
): Promise<ImportRulesResponse> {
  const started = Date.now();
  const t = validateHeader(header, deps.limits);
  const now = deps.now();
  const expireTime = header.ttl ? expiryFromTtl(header.ttl, now, 'header.ttl') : null;
  const parser = blocklistParser({ format: header.format, column: header.column }, 'header');
  const guard: GuardContext = { action: t.action, allowPrivate: header.allowPrivate };
  const guardOpen = guardIsOpen(guard);
  // The lockout guard's one decision, per deny line (enforce mode): refused lines are reported like invalid ones.
  const lockout: LockoutChecker | undefined =
    deps.guard && t.action === Action.ACTION_DENY && t.mode !== Mode.MODE_MONITOR ? await deps.guard.checker() : undefined;
  const direction = policyDirection(t.direction);
  const seen = new Set<string>();
  const invalidLines: ImportLineError[] = [];
  const localLines: ImportLineError[] = [];
  let lineNo = 0;
  let invalid = 0;
  let skippedLocal = 0;
  let prefixes = 0;
  let duplicate = 0;
  let receivedMs = 0;
  // One line's results: new canonical CIDRs into `out`, the rest counted and reported.
  function take(results: readonly LineResult[], out: string[]): void {
    for (const r of results) {
      if (!r.ok) {
        invalid++;
        if (invalidLines.length < MAX_REPORTED_INVALID) {
          invalidLines.push({ lineNumber: BigInt(r.line), line: r.text, message: r.message, reason: r.reason });
        }
        continue;
      }
      for (const p of r.prefixes) {
        const refusal = guardOpen ? null : guardPrefix(p, guard);
        if (refusal) {
          skippedLocal++;
          if (localLines.length < MAX_REPORTED_INVALID) {
            localLines.push({ lineNumber: BigInt(r.line), line: formatPrefix(p), message: refusal.message, reason: refusal.reason });
          }
          continue;
        }
        const hit = lockout?.lockoutCheck(p, direction);
        if (hit) {
          invalid++;
          if (invalidLines.length < MAX_REPORTED_INVALID) {
            const e = lockoutError(`line ${r.line}`, hit);
            invalidLines.push({ lineNumber: BigInt(r.line), line: formatPrefix(p), message: e.message, reason: e.reason });
          }
          continue;
        }
        prefixes++;
        const canonical = formatPrefix(p);
        if (seen.has(canonical)) {
          duplicate++;
          continue;
        }
        seen.add(canonical);
        out.push(canonical);
      }
    }
  }
  // Parses chunks as they arrive; yields the new canonical CIDRs of each.
  async function* accepted(): AsyncGenerator<string[]> {
    try {
      for await (const chunk of chunks) {
        if (lineNo + chunk.lines.length > deps.limits.maxImportLines) {
          throw new FleetwallError(
            'IMPORT_TOO_LARGE',
            `the import has more than ${deps.limits.maxImportLines} lines; nothing was stored: split the list into several imports`,
            { max_lines: String(deps.limits.maxImportLines) },
          );
        }
        const out: string[] = [];
        for (const line of chunk.lines) {
          lineNo++;
          take(parser.pushLine(line), out);
        }
        if (out.length) yield out;
      }
      const out: string[] = [];
      take(parser.end().results, out);
      if (out.length) yield out;
    } catch (e) {
      throw blocklistFailure(e, 'header');
    }
    receivedMs = Date.now() - started;
    seen.clear();
  }
  const template = { ...t, expireTime };
  const res = await streamImport(
    deps.sql,
    deps.store,
    template,
    accepted(),
    ctx.actor,
    {
      commit: () => !(header.atomic && invalid > 0),
      summary: (added) => ({
        lines: lineNo,
        added,
        duplicate_lines: duplicate,
        invalid_lines: invalid,
        action: t.action,
        direction: t.direction,
        mode: t.mode,
        selector: t.selector,
        comment: t.comment,
        expire_time: expireTime?.toISOString() ?? null,
        format: formatName(formatOfSummary(parser.end().summary).format),
        skipped_local: skippedLocal,
      }),
    },
    deps.handoff,
  );
  deps.logger?.info(
    {
      lines: lineNo,
      added: res.added,
      revision: res.revision.toString(),
      received_ms: receivedMs,
      ...res.timings,
      total_ms: Date.now() - started,
    },
    res.revision !== 0n ? 'import committed' : 'import stored nothing',
  );
  return {
    lines: BigInt(lineNo),
    invalid: BigInt(invalid),
    invalidLines,
    added: BigInt(res.added),
    duplicate: BigInt(duplicate + res.existing),
    revision: res.revision,
    ...formatOfSummary(parser.end().summary),
    skippedLocal: BigInt(skippedLocal),
    skippedLocalLines: localLines,
    prefixes: BigInt(prefixes),
  };
}
