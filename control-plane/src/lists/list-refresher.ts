// One list's refresh, start to end (the sequence diagram is at the top of
// proto/fleetwall/v1/list_service.proto): take the list's lock (one refresher
// per list across every control-plane process), fetch and parse
// (list-load.ts), apply the safeguards, then in ONE write transaction lock the
// list's row, take its rules' CIDRs (as this process remembers them from its
// last write when their fingerprint in the store is unchanged, list-memory.ts;
// else read back), diff in memory and write only the difference
// (list-write.ts) with the list's new state, as one revision. A 1%-changed
// refresh of a million entries then costs a fetch, a parse, one count over the
// list's rules and a write of the 1%.
// Also the list's first refresh (create, where any failure stores nothing)
// and its removal.
import type { Logger } from 'pino';
import type { Sql, TransactionSql } from 'postgres';
import { RefreshOutcome, RefreshResult, refreshOutcomeToJSON } from '../../../proto/gen/fleetwall/v1/list_service.js';
import type { RuleList } from '../../../proto/gen/fleetwall/v1/list_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { blocklistFailure } from '../rules/blocklist-options.js';
import { writeTransaction } from '../store/write-transaction.js';
import { diffEntries, type EntrySet } from './entry-set.js';
import { type Loaded, loadList, type ParseStats } from './list-load.js';
import type { LockoutContext } from '../services/import-guard.js';
import type { LockoutGuard } from '../lockout/lockout-guard.js';
import { policyDirection } from '../rules/enums.js';
import { Action, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { ListMetricsSink } from './list-metrics.js';
import type { FetchOptions } from './list-source.js';
import { listActor, type ListSpec } from './list-spec.js';
import { BUSY, type ListRow, type ListStore, listOfRow, specOfRow } from './list-store.js';
import { ListMemory, type RulesFingerprint } from './list-memory.js';
import { auditList, deleteListRules, type ListWriteCounts, writeListRules } from './list-write.js';

export interface RefresherConfig {
  readonly fetch: FetchOptions;
  readonly maxInvalidPercent: number;
  readonly maxShrinkPercent: number;
  readonly retryIntervalMs: number;
  readonly controlPlaneId: string;
  /** The lockout guard: a deny list's entries that would drop protected traffic are held, never written. */
  readonly lockout?: LockoutGuard;
}

export interface RefreshOptions {
  /** Past the invalid-lines and shrink safeguards. */
  readonly force?: boolean;
  /** Who asked (the audit row); scheduled refreshes: undefined. */
  readonly requestedBy?: string;
}

const EMPTY_VALIDATORS = { etag: '', lastModified: '' };

/** Where a refresh's time went, for its log line. */
type Timings = Record<string, number>;

/** "applied", "shrink_refused": the outcome as a metric label. */
export function outcomeLabel(o: RefreshOutcome): string {
  return refreshOutcomeToJSON(o).replace('REFRESH_OUTCOME_', '').toLowerCase();
}

function statsFields(s: ParseStats) {
  return {
    lines: BigInt(s.lines),
    invalid: BigInt(s.invalid),
    skippedLocal: BigInt(s.skippedLocal),
    format: s.format,
    formatDetected: s.formatDetected,
    invalidLines: s.invalidLines,
    skippedLocalLines: s.localLines,
  };
}

export class ListRefresher {
  private readonly stopping = new AbortController();
  private readonly fetch: FetchOptions;
  /** Each list's rules as of this process's last write or read of them. */
  private readonly memory = new ListMemory();

  constructor(
    private readonly sql: Sql,
    private readonly store: ListStore,
    private readonly config: RefresherConfig,
    private readonly logger: Logger,
    private readonly metrics?: ListMetricsSink,
  ) {
    this.fetch = { ...config.fetch, signal: this.stopping.signal };
  }

  /** For a deny list in enforce mode: the lockout guard's checker as of now, and the list's direction. */
  private async protectedRefusal(spec: ListSpec): Promise<LockoutContext | undefined> {
    if (!this.config.lockout || spec.action !== Action.ACTION_DENY || spec.mode === Mode.MODE_MONITOR) return undefined;
    return { checker: await this.config.lockout.checker(), direction: policyDirection(spec.direction) };
  }

  /** Ends fetches in progress (they fail as "stopped"; nothing is applied). */
  stop(): void {
    this.stopping.abort();
  }

  /** The invalid-lines safeguard: a message when the parse has too many, else undefined. */
  private tooManyInvalid(s: ParseStats): string | undefined {
    const data = s.entries + s.invalid;
    if (data === 0 || s.invalid * 100 <= this.config.maxInvalidPercent * data) return undefined;
    return `${s.invalid} of ${data} data lines are invalid, more than ${this.config.maxInvalidPercent}% (FLEETWALL_LIST_MAX_INVALID_PERCENT)`;
  }

  private result(started: number, fields: Partial<RefreshResult>): RefreshResult {
    const ms = Date.now() - started;
    return RefreshResult.fromPartial({
      ...fields,
      startTime: new Date(started),
      duration: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
      controlPlaneId: this.config.controlPlaneId,
    });
  }

  private nextRun(spec: ListSpec, success: boolean): Date {
    return new Date(Date.now() + (success ? spec.everyMs : Math.min(spec.everyMs, this.config.retryIntervalMs)));
  }

  /** Refreshes a list now (RefreshList). LIST_BUSY if another refresh of it runs. */
  async refresh(name: string, opts: RefreshOptions = {}): Promise<{ list: RuleList; result: RefreshResult }> {
    const row = await this.store.get(name);
    if (!row) throw notFound(name);
    const out = await this.store.withLock(row.id, () => this.refreshLocked(row.id, name, opts, false));
    if (out === BUSY) {
      throw new FleetwallError(
        'LIST_BUSY',
        `a refresh of list ${name} is running (on this or another control plane); its outcome will show in \`fleetwall lists ls\``,
        { list: name },
      );
    }
    if (out === undefined) throw notFound(name);
    return out;
  }

  /** A scheduled refresh: skipped if another process holds the list or it is no longer due. */
  async refreshIfDue(name: string): Promise<RefreshResult | undefined> {
    const row = await this.store.get(name);
    if (!row) return undefined;
    const out = await this.store.withLock(row.id, () => this.refreshLocked(row.id, name, {}, true));
    return out === BUSY || out === undefined ? undefined : out.result;
  }

  private async refreshLocked(
    id: bigint,
    name: string,
    opts: RefreshOptions,
    onlyIfDue: boolean,
  ): Promise<{ list: RuleList; result: RefreshResult } | undefined> {
    // Read again under the lock: another process may have refreshed it, or removed it.
    const row = await this.store.get(name);
    if (!row || row.id !== id) return undefined;
    if (onlyIfDue && row.next_run.getTime() > Date.now()) return undefined;
    const spec = specOfRow(row);
    const started = Date.now();
    const timings: Timings = {};
    const loaded = await loadList(spec, { etag: row.etag, lastModified: row.last_modified }, this.fetch, await this.protectedRefusal(spec));
    timings.load_ms = Date.now() - started;
    const result = await this.settle(row, spec, loaded, started, opts, timings);
    this.metrics?.observeRefresh(name, outcomeLabel(result.outcome), (Date.now() - started) / 1000);
    this.logger.info(
      {
        list: name,
        outcome: outcomeLabel(result.outcome),
        added: Number(result.added),
        removed: Number(result.removed),
        revision: result.revision.toString(),
        ...timings,
        ms: Date.now() - started,
      },
      result.message,
    );
    const after = await this.store.get(name);
    return { list: after ? listOfRow(after) : listOfRow(row), result };
  }

  /** Turns what the fetch gave into the list's new state (and rules). */
  private async settle(
    row: ListRow,
    spec: ListSpec,
    loaded: Loaded,
    started: number,
    opts: RefreshOptions,
    timings: Timings,
  ): Promise<RefreshResult> {
    const fail = async (outcome: RefreshOutcome, message: string, fields: Partial<RefreshResult> = {}) => {
      const result = this.result(started, { ...fields, outcome, message });
      await this.store.record(row.id, { result, nextRun: this.nextRun(spec, false), success: false });
      return result;
    };
    switch (loaded.kind) {
      case 'fetch-failed':
        return fail(RefreshOutcome.REFRESH_OUTCOME_FETCH_FAILED, `${loaded.message}; the list keeps its ${row.entries} rules`, {
          httpStatus: loaded.httpStatus,
        });
      case 'parse-failed':
        return fail(RefreshOutcome.REFRESH_OUTCOME_PARSE_FAILED, `${loaded.message}; the list keeps its ${row.entries} rules`, {
          httpStatus: loaded.httpStatus,
        });
      case 'not-modified': {
        const result = this.result(started, {
          outcome: RefreshOutcome.REFRESH_OUTCOME_NOT_MODIFIED,
          message: `not modified since the last fetch; ${row.entries} rules unchanged`,
          httpStatus: loaded.httpStatus,
        });
        await this.store.record(row.id, { result, nextRun: this.nextRun(spec, true), success: true });
        return result;
      }
    }
    const stats = statsFields(loaded.stats);
    const invalid = this.tooManyInvalid(loaded.stats);
    if (invalid && !opts.force) {
      return fail(RefreshOutcome.REFRESH_OUTCOME_TOO_MANY_INVALID, `${invalid}; the list keeps its ${row.entries} rules`, {
        ...stats,
        httpStatus: loaded.httpStatus,
      });
    }
    return this.apply(row, spec, loaded.entries, { ...stats, httpStatus: loaded.httpStatus }, loaded.validators, started, opts, timings);
  }

  /** The write: one transaction, one revision (none when nothing changed). */
  private async apply(
    row: ListRow,
    spec: ListSpec,
    desired: EntrySet,
    fields: Partial<RefreshResult>,
    validators: { etag: string; lastModified: string },
    started: number,
    opts: RefreshOptions,
    timings: Timings,
  ): Promise<RefreshResult> {
    const actor = listActor(spec.name);
    let t = Date.now();
    /** What to remember of the list's rules once the transaction commits (the last attempt's). */
    let after: { fingerprint: RulesFingerprint; entries: EntrySet } | undefined;
    const write = writeTransaction(this.sql, actor, 'list_refresh', async (tx, w) => {
      after = undefined;
      const locked = await this.store.lockRow(tx, row.id);
      if (!locked)
        throw new FleetwallError('LIST_NOT_FOUND', `list ${spec.name} was removed while it was being refreshed`, { list: spec.name });
      t = Date.now();
      const fingerprint = await this.store.fingerprint(tx, row.id);
      timings.fingerprint_ms = Date.now() - t;
      t = Date.now();
      let current = this.memory.entries(row.id, fingerprint);
      timings.remembered = current ? 1 : 0;
      current ??= await this.store.currentEntries(tx, row.id);
      timings.current_ms = Date.now() - t;
      const owned = current.size;
      const wanted = desired.size;
      const shrink = owned > 0 && (owned - wanted) * 100 > this.config.maxShrinkPercent * owned;
      if (shrink && !opts.force) {
        const result = this.result(started, {
          ...fields,
          prefixes: BigInt(wanted),
          outcome: RefreshOutcome.REFRESH_OUTCOME_SHRINK_REFUSED,
          message: `the list would shrink from ${owned} to ${wanted} rules, by more than ${this.config.maxShrinkPercent}% (FLEETWALL_LIST_MAX_SHRINK_PERCENT): kept the last good set (refresh with force if the list really shrank)`,
        });
        await this.store.record(row.id, { result, nextRun: this.nextRun(spec, false), success: false }, tx);
        after = { fingerprint, entries: current };
        return { value: result, changes: 0 };
      }
      t = Date.now();
      const diff = diffEntries(current, desired);
      timings.diff_ms = Date.now() - t;
      t = Date.now();
      const counts = await writeListRules(tx, w, { listId: row.id, spec, ruleActor: actor, added: diff.added, removed: diff.removed });
      timings.write_ms = Date.now() - t;
      t = Date.now();
      after = await this.rulesAfter(tx, row.id, w, fingerprint, current, desired, diff.removed.length, counts);
      const entries = owned - counts.removed + counts.added;
      const changed = counts.added + counts.removed > 0;
      const result = this.result(started, {
        ...fields,
        prefixes: BigInt(wanted),
        added: BigInt(counts.added),
        removed: BigInt(counts.removed),
        heldByOtherRules: BigInt(counts.held),
        outcome: changed ? RefreshOutcome.REFRESH_OUTCOME_APPLIED : RefreshOutcome.REFRESH_OUTCOME_UNCHANGED,
        message: changed
          ? `${counts.added} added, ${counts.removed} removed: ${entries} rules${counts.held ? ` (${counts.held} entries held by other rules)` : ''}`
          : `no change: ${entries} rules${counts.held ? ` (${counts.held} entries held by other rules)` : ''}`,
      });
      if (changed) {
        await auditList(tx, w, actor, 'list.refresh', null, {
          list: spec.name,
          added: counts.added,
          removed: counts.removed,
          held_by_other_rules: counts.held,
          entries,
          forced: opts.force === true,
          ...(opts.requestedBy ? { requested_by: opts.requestedBy } : {}),
        });
      }
      await this.store.record(row.id, { result, nextRun: this.nextRun(spec, true), validators, entries, success: true }, tx);
      return { value: result, changes: counts.added + counts.removed };
    });
    const res = await write.catch((e: unknown) => {
      this.memory.forget(row.id);
      throw e;
    });
    if (after) this.memory.remember(row.id, after.fingerprint, after.entries);
    else this.memory.forget(row.id);
    timings.commit_ms = Date.now() - t;
    if (res.revision === 0n) return res.value;
    const result = { ...res.value, revision: res.revision };
    // The revision is known only at commit: add it to the recorded result.
    await this.store.setRevision(row.id, res.revision).catch((err) => this.logger.warn({ err }, 'recording the revision failed'));
    return result;
  }

  /**
   * The list's rules after its write, and their fingerprint, to remember
   * (list-memory.ts); undefined when the write did not go exactly as the diff
   * said (a rule to remove was already gone: then the next refresh reads
   * them from the store).
   */
  private async rulesAfter(
    tx: TransactionSql,
    listId: bigint,
    writeId: bigint,
    before: RulesFingerprint,
    current: EntrySet,
    desired: EntrySet,
    toRemove: number,
    counts: ListWriteCounts,
  ): Promise<{ fingerprint: RulesFingerprint; entries: EntrySet } | undefined> {
    if (counts.removed !== toRemove) return undefined;
    if (counts.added === 0 && counts.removed === 0) return { fingerprint: before, entries: current };
    const entries = counts.heldCidrs.length > 0 ? desired.without(counts.heldCidrs) : desired;
    // Rules were added: this write's id is the highest (list writes are one at a time, under the list's lock).
    const fingerprint =
      counts.added > 0
        ? { count: before.count - counts.removed + counts.added, maxWriteId: writeId }
        : await this.store.fingerprint(tx, listId);
    return fingerprint.count === entries.size ? { fingerprint, entries } : undefined;
  }

  /**
   * A new list: its first fetch and parse, then the list and its rules in one
   * revision. Any failure is an error and stores nothing.
   */
  async create(spec: ListSpec, actor: string): Promise<RuleList> {
    if (await this.store.get(spec.name)) throw exists(spec.name);
    const started = Date.now();
    const loaded = await loadList(spec, EMPTY_VALIDATORS, this.fetch, await this.protectedRefusal(spec));
    if (loaded.kind === 'fetch-failed') {
      throw new FleetwallError('LIST_FETCH_FAILED', `${loaded.message}; nothing was stored: check the source and add the list again`, {
        list: spec.name,
        http_status: String(loaded.httpStatus),
      });
    }
    if (loaded.kind === 'parse-failed') throw blocklistFailure(loaded.error, 'list');
    if (loaded.kind === 'not-modified') throw new Error('not modified without validators');
    const invalid = this.tooManyInvalid(loaded.stats);
    if (invalid) {
      const first = loaded.stats.invalidLines[0];
      throw new FleetwallError(
        'LIST_REFUSED',
        `${invalid}${first ? ` (line ${first.lineNumber}: ${first.message})` : ''}; nothing was stored: check the format and column`,
        { list: spec.name },
      );
    }
    const ruleActor = listActor(spec.name);
    const fields = { ...statsFields(loaded.stats), httpStatus: loaded.httpStatus };
    let after: { fingerprint: RulesFingerprint; entries: EntrySet } | undefined;
    const res = await writeTransaction(this.sql, actor, 'list_create', async (tx, w) => {
      after = undefined;
      const row = await this.store.insert(tx, spec, actor, this.nextRun(spec, true));
      if (!row) throw exists(spec.name);
      const added = loaded.entries.cidrs();
      const counts = await writeListRules(tx, w, { listId: row.id, spec, ruleActor, added, removed: [] });
      const entries = counts.heldCidrs.length > 0 ? loaded.entries.without(counts.heldCidrs) : loaded.entries;
      if (entries.size === counts.added) after = { fingerprint: { count: counts.added, maxWriteId: counts.added > 0 ? w : 0n }, entries };
      const result = this.result(started, {
        ...fields,
        prefixes: BigInt(added.length),
        added: BigInt(counts.added),
        heldByOtherRules: BigInt(counts.held),
        outcome: counts.added > 0 ? RefreshOutcome.REFRESH_OUTCOME_APPLIED : RefreshOutcome.REFRESH_OUTCOME_UNCHANGED,
        message: `first refresh: ${counts.added} rules${counts.held ? ` (${counts.held} entries held by other rules)` : ''}`,
      });
      await auditList(tx, w, actor, 'list.create', null, {
        list: { ...spec, every_ms: spec.everyMs },
        source: ruleActor,
        added: counts.added,
        held_by_other_rules: counts.held,
      });
      await this.store.record(
        row.id,
        { result, nextRun: this.nextRun(spec, true), validators: loaded.validators, entries: counts.added, success: true },
        tx,
      );
      return { value: row.id, changes: counts.added };
    });
    if (after) this.memory.remember(res.value, after.fingerprint, after.entries);
    if (res.revision !== 0n) await this.store.setRevision(res.value, res.revision);
    this.metrics?.observeRefresh(
      spec.name,
      outcomeLabel(res.revision !== 0n ? RefreshOutcome.REFRESH_OUTCOME_APPLIED : RefreshOutcome.REFRESH_OUTCOME_UNCHANGED),
      (Date.now() - started) / 1000,
    );
    const row = await this.store.get(spec.name);
    return listOfRow(row!);
  }

  /** Removes a list and every rule it owns, in one revision. */
  async remove(name: string, actor: string): Promise<{ removed: number; revision: bigint }> {
    const row = await this.store.get(name);
    if (!row) throw notFound(name);
    const res = await writeTransaction(this.sql, actor, 'list_delete', async (tx, w) => {
      const locked = await this.store.lockRow(tx, row.id);
      if (!locked) throw notFound(name);
      const removed = await deleteListRules(tx, w, row.id);
      await auditList(tx, w, actor, 'list.delete', { list: name, url: locked.url, entries: Number(locked.entries) }, { removed });
      await tx`delete from lists where id = ${row.id.toString()}::bigint`;
      return { value: removed, changes: removed };
    });
    this.memory.forget(row.id);
    return { removed: res.value, revision: res.revision };
  }
}

export function notFound(name: string): FleetwallError {
  return new FleetwallError('LIST_NOT_FOUND', `there is no list named ${name}; see \`fleetwall lists ls\``, { list: name });
}

function exists(name: string): FleetwallError {
  return new FleetwallError(
    'LIST_EXISTS',
    `a list named ${name} exists; remove it first (\`fleetwall lists rm ${name}\`) or choose another name`,
    { list: name },
  );
}
