// ImportRules: a header (shared settings), then chunks of lines in one of the
// formats public blocklists use (common/src/blocklist: plain, ranges, JSON
// lines, CSV; header.format, detected when unset). Duplicates (within the
// list or of stored rules with the same direction and selector) are counted
// and skipped; invalid lines are reported with their numbers; in a deny list,
// lines overlapping local ranges are reported and skipped unless
// header.allow_private (import-guard.ts). A file that cannot be read as asked
// (an unknown column): UNKNOWN_COLUMN, nothing stored.
//
// Two phases. Reading: the stream is read to its end and parsed as chunks
// arrive, holding nothing in the database - no connection, transaction or
// lock - however slowly the client sends; a stream idle for
// FLEETWALL_IMPORT_IDLE_TIMEOUT or open past FLEETWALL_IMPORT_TIMEOUT ends
// (DEADLINE_EXCEEDED IMPORT_TIMEOUT), one over FLEETWALL_MAX_IMPORT_LINES
// (IMPORT_TOO_LARGE) or FLEETWALL_MAX_IMPORT_BYTES is refused, and a stream
// the client cancels or breaks ends here: nothing was ever written.
// Committing (the stream ended normally): one transaction, one revision
// (store/rule-import.ts), or nothing if header.atomic is set and a line is
// invalid, the capacity check refuses it, or the client goes away before the
// commit. At most FLEETWALL_MAX_CONCURRENT_IMPORTS run at once per process.
// A deny line the lockout guard refuses (it would drop traffic of a protected
// address) is reported like an invalid line, reason LOCKOUT_PROTECTED, and
// the rest is imported; an import has no force.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
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
import { type BulkHandoff, commitImport } from '../store/rule-import.js';
import type { RuleStore } from '../store/rule-store.js';
import { tableIndex } from '../sync/rule-cache.js';
import type { CallContext } from './call-context.js';
import type { CapacityGuard } from './capacity-guard.js';
import { prefixCheck } from './import-guard.js';
import { Action, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { LockoutGuard } from '../lockout/lockout-guard.js';

export interface ImportLimits extends ValidationLimits {
  readonly maxImportLines: number;
  readonly maxImportBytes: number;
  readonly maxConcurrentImports: number;
  readonly importIdleTimeoutMs: number;
  readonly importTimeoutMs: number;
}

export interface ImportDeps {
  readonly sql: Sql;
  readonly store: RuleStore;
  readonly limits: ImportLimits;
  readonly now: () => Date;
  readonly slots: ImportSlots;
  readonly handoff?: BulkHandoff;
  readonly capacity?: CapacityGuard;
  readonly logger?: Logger;
  /** The lockout guard: a deny line that would drop protected traffic is refused as a line. */
  readonly guard?: LockoutGuard;
}

const MAX_REPORTED_INVALID = 1000;

/** Imports running on this process (FLEETWALL_MAX_CONCURRENT_IMPORTS). */
export class ImportSlots {
  running = 0;

  acquire(max: number): () => void {
    if (this.running >= max) {
      throw new FleetwallError(
        'TOO_MANY_IMPORTS',
        `${this.running} imports are running on this control plane, the most it runs at once (FLEETWALL_MAX_CONCURRENT_IMPORTS=${max}); retry when one has finished`,
        { running: String(this.running), max: String(max) },
      );
    }
    this.running++;
    let released = false;
    return () => {
      if (!released) this.running--;
      released = true;
    };
  }
}

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

function timeout(why: string, limitMs: number, setting: string): FleetwallError {
  return new FleetwallError(
    'IMPORT_TIMEOUT',
    `${why} (${limitMs}ms, ${setting}); nothing was stored: send the list without pauses, or split it`,
    {
      limit_ms: String(limitMs),
    },
  );
}

/** The next chunk, or IMPORT_TIMEOUT after `idleMs` of silence or at `deadline`. */
async function nextChunk(
  it: AsyncIterator<ImportRulesChunk>,
  idleMs: number,
  deadline: number,
  totalMs: number,
): Promise<IteratorResult<ImportRulesChunk>> {
  const next = it.next();
  let t: NodeJS.Timeout | undefined;
  const wait = Math.min(idleMs, deadline - Date.now());
  const timer = new Promise<never>((_, reject) => {
    t = setTimeout(
      () =>
        reject(
          wait < idleMs
            ? timeout('the import ran past its deadline', totalMs, 'FLEETWALL_IMPORT_TIMEOUT')
            : timeout('the import stream sent nothing for too long', idleMs, 'FLEETWALL_IMPORT_IDLE_TIMEOUT'),
        ),
      Math.max(0, wait),
    );
  });
  try {
    return await Promise.race([next, timer]);
  } finally {
    clearTimeout(t);
    // A chunk that arrives after a timeout is read by nobody: no unhandled rejection either.
    next.catch(() => undefined);
  }
}

export async function importRules(
  header: ImportRulesHeader,
  chunks: AsyncIterable<ImportRulesChunk>,
  ctx: CallContext,
  deps: ImportDeps,
): Promise<ImportRulesResponse> {
  const started = Date.now();
  const { limits } = deps;
  const t = validateHeader(header, limits);
  const release = deps.slots.acquire(limits.maxConcurrentImports);
  try {
    const deadline = started + limits.importTimeoutMs;
    const now = deps.now();
    const expireTime = header.ttl ? expiryFromTtl(header.ttl, now, 'header.ttl') : null;
    const parser = blocklistParser({ format: header.format, column: header.column }, 'header');
    // Local ranges, then the lockout guard (enforce-mode deny lines): a lockout refusal is reported like an invalid line.
    const refuse = prefixCheck(
      { action: t.action, allowPrivate: header.allowPrivate },
      deps.guard && t.action === Action.ACTION_DENY && t.mode !== Mode.MODE_MONITOR
        ? { checker: await deps.guard.checker(), direction: policyDirection(t.direction) }
        : undefined,
    );
    // Canonical CIDRs in the order first seen (a Set keeps insertion order).
    const seen = new Set<string>();
    const invalidLines: ImportLineError[] = [];
    const localLines: ImportLineError[] = [];
    let lineNo = 0;
    let bytes = 0;
    let invalid = 0;
    let skippedLocal = 0;
    let prefixes = 0;
    let duplicate = 0;
    // One line's results: new canonical CIDRs into `seen`, the rest counted and reported.
    const take = (results: readonly LineResult[]): void => {
      for (const r of results) {
        if (!r.ok) {
          invalid++;
          if (invalidLines.length < MAX_REPORTED_INVALID) {
            invalidLines.push({ lineNumber: BigInt(r.line), line: r.text, message: r.message, reason: r.reason });
          }
          continue;
        }
        for (const p of r.prefixes) {
          const refusal = refuse(p, `line ${r.line}`);
          if (refusal?.check === 'local-range') {
            skippedLocal++;
            if (localLines.length < MAX_REPORTED_INVALID) {
              localLines.push({ lineNumber: BigInt(r.line), line: formatPrefix(p), message: refusal.message, reason: refusal.reason });
            }
            continue;
          }
          if (refusal) {
            invalid++;
            if (invalidLines.length < MAX_REPORTED_INVALID) {
              invalidLines.push({ lineNumber: BigInt(r.line), line: formatPrefix(p), message: refusal.message, reason: refusal.reason });
            }
            continue;
          }
          prefixes++;
          const canonical = formatPrefix(p);
          if (seen.has(canonical)) duplicate++;
          else seen.add(canonical);
        }
      }
    };

    // Phase 1: read the whole stream.
    try {
      const it = chunks[Symbol.asyncIterator]();
      for (;;) {
        const n = await nextChunk(it, limits.importIdleTimeoutMs, deadline, limits.importTimeoutMs);
        if (n.done) break;
        const chunk = n.value;
        if (lineNo + chunk.lines.length > limits.maxImportLines) {
          throw new FleetwallError(
            'IMPORT_TOO_LARGE',
            `the import has more than ${limits.maxImportLines} lines; nothing was stored: split the list into several imports`,
            { max_lines: String(limits.maxImportLines) },
          );
        }
        for (const line of chunk.lines) bytes += line.length + 1;
        if (bytes > limits.maxImportBytes) {
          throw new FleetwallError(
            'MESSAGE_TOO_LARGE',
            `the import is over ${limits.maxImportBytes} bytes of lines (FLEETWALL_MAX_IMPORT_BYTES); nothing was stored: split the list into several imports`,
            { max_bytes: String(limits.maxImportBytes) },
          );
        }
        for (const line of chunk.lines) {
          lineNo++;
          take(parser.pushLine(line));
        }
      }
      take(parser.end().results);
    } catch (e) {
      throw blocklistFailure(e, 'header');
    }
    const receivedMs = Date.now() - started;
    if (ctx.signal?.aborted) throw new FleetwallError('IMPORT_TIMEOUT', 'the client went away; nothing was stored');

    // Phase 2: commit.
    const template = { ...t, expireTime };
    const cidrs = [...seen];
    seen.clear();
    const atomicFail = header.atomic && invalid > 0;
    const res = atomicFail
      ? { added: 0, existing: 0, revision: 0n, timings: {} as Record<string, number> }
      : await commitImport(deps.sql, deps.store, template, cidrs, ctx.actor, {
          handoff: deps.handoff,
          signal: ctx.signal,
          statementTimeoutMs: Math.max(1000, deadline - Date.now()),
          beforeWrite: deps.capacity
            ? async (toAdd) => {
                let v6 = 0;
                for (const c of toAdd) if (c.includes(':')) v6++;
                await deps.capacity!.check(
                  [
                    { selector: t.selector, table: tableIndex(t.direction, '0.0.0.0/0'), count: toAdd.length - v6 },
                    { selector: t.selector, table: tableIndex(t.direction, '::/0'), count: v6 },
                  ],
                  'import',
                );
              }
            : undefined,
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
        });
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
  } finally {
    release();
  }
}
