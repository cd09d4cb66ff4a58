// Follows the change log: LISTEN fleetwall_revision (every write NOTIFYs its
// revision at commit, from whichever control plane made it), read the
// revisions after the cache's one in order with the rules they touched,
// apply each to the cache and publish it to the agents. A periodic poll
// covers a missed notification; the listener re-subscribes and catches up
// after a reconnect.
import type { Sql } from 'postgres';
import type { Logger } from 'pino';
import type { ChangeLog, RuleChange, SyncRuleRow } from '../store/change-log.js';
import type { LocalBulkWrites } from './bulk-handoff.js';
import { REVISION_CHANNEL } from '../store/write-transaction.js';
import type { RuleCache, RuleTransition } from './rule-cache.js';

export type RevisionListener = (revision: bigint, commitTime: Date, transitions: readonly RuleTransition[]) => void;

const BATCH = 100;

export class RevisionFeed {
  private pumping: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private stopped = false;
  private failing = false;

  constructor(
    private readonly sql: Sql,
    private readonly changeLog: ChangeLog,
    private readonly cache: RuleCache,
    private readonly onRevision: RevisionListener,
    /** The cache was reloaded from scratch: sessions must start over. */
    private readonly onReload: () => void,
    private readonly pollIntervalMs: number,
    private readonly logger: Logger,
    private readonly localBulk?: LocalBulkWrites,
  ) {}

  async start(): Promise<void> {
    const meta = await this.sql.listen(
      REVISION_CHANNEL,
      () => void this.kick(),
      () => void this.kick(),
    );
    this.unlisten = meta.unlisten;
    await this.load();
    this.timer = setInterval(() => void this.kick(), this.pollIntervalMs);
    this.timer.unref();
    await this.catchUp();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.pumping?.catch(() => undefined);
    await this.unlisten?.().catch(() => undefined);
  }

  /** Loads every rule at one consistent revision. */
  private async load(): Promise<void> {
    const started = Date.now();
    this.cache.clear();
    await this.sql.begin('isolation level repeatable read read only', async (tx) => {
      const [r] = await tx<{ value: bigint }[]>`select value from revision_counter where id = 1`;
      await tx<SyncRuleRow[]>`select id, cidr::text as cidr, action, direction, mode, expire_time, selector_key from rules`.cursor(
        20000,
        (rows) => {
          this.cache.loadRows(rows);
        },
      );
      this.cache.revision = r!.value;
    });
    this.logger.info({ revision: this.cache.revision.toString(), rules: this.cache.size, ms: Date.now() - started }, 'rule cache loaded');
  }

  private kick(): Promise<void> {
    return this.pump().then(
      () => {
        if (this.failing) this.logger.info('reading the change log works again');
        this.failing = false;
      },
      (err) => {
        // Once per failing period: the database may be away for a while.
        if (!this.failing) this.logger.warn({ err }, 'reading the change log failed; retrying on the next notification or poll');
        this.failing = true;
      },
    );
  }

  /** Resolves once every revision committed before the call is applied. */
  catchUp(): Promise<void> {
    return this.pump();
  }

  private pump(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.pumping !== undefined) {
      this.again = true;
      return this.pumping;
    }
    this.pumping = (async () => {
      try {
        do {
          this.again = false;
          while (!this.stopped && (await this.step()));
        } while (this.again && !this.stopped);
      } finally {
        this.pumping = undefined;
      }
    })();
    return this.pumping;
  }

  /** Applies the next batch of revisions; true if there may be more. */
  private async step(): Promise<boolean> {
    const revs = await this.changeLog.nextRevisions(this.cache.revision, BATCH);
    if (revs.length === 0) return false;
    if (revs[0]!.revision !== this.cache.revision + 1n) {
      this.logger.error(
        { have: this.cache.revision.toString(), next: revs[0]!.revision.toString() },
        'gap in the revision sequence; reloading',
      );
      await this.reload();
      return true;
    }
    const pruned = revs.some((r) => r.changeCount > 0n && r.changes.length === 0 && !r.bulk);
    const floor = pruned ? await this.changeLog.logFloor() : 0n;
    for (const r of revs) {
      if (this.stopped) return false;
      if (r.revision <= floor) {
        this.logger.error({ revision: r.revision.toString(), floor: floor.toString() }, 'change log pruned past this process; reloading');
        await this.reload();
        return true;
      }
      let changes = r.changes;
      if (r.bulk) {
        // A bulk import (maybe a million rules) is read on its own; what
        // follows it is read again afterwards.
        const started = Date.now();
        const local = this.localBulk?.take(r.writeId);
        let bulk: RuleChange[];
        if (local) {
          const t = local.template;
          bulk = local.cidrs.map((cidr, i) => {
            const id = local.ids[i]!;
            return {
              ruleId: id,
              row: {
                id,
                cidr,
                action: t.action,
                direction: t.direction,
                mode: t.mode,
                expire_time: t.expireTime,
                selector_key: t.selectorKey,
              },
              encoded: local.encoded?.[i],
            };
          });
        } else {
          bulk = await this.changeLog.bulkChanges(r.writeId);
        }
        changes = changes.length ? [...changes, ...bulk] : bulk;
        this.logger.info(
          { revision: r.revision.toString(), rules: changes.length, from: local ? 'memory' : 'store', ms: Date.now() - started },
          'bulk revision read',
        );
      }
      const transitions = this.cache.apply(r.revision, changes);
      this.onRevision(r.revision, r.commitTime, transitions);
      if (r.bulk) return true;
    }
    return revs.length === BATCH;
  }

  private async reload(): Promise<void> {
    await this.load();
    this.onReload();
  }
}
