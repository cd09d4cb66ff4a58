// Snapshot or resume: what a stream that said Hello gets (agent-session.ts
// attach). A resume replays, one delta per revision, the rules changed since
// the agent's resume_revision; a snapshot is sent when that is impossible
// (another store, a revision older than the change log or newer than the
// cache, a relabelled node) or dearer (too many revisions or changes).
import { type Hello, SyncMode } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import type { ChangeLog } from '../store/change-log.js';
import type { RuleCache } from './rule-cache.js';
import { encodeDelta } from './wire-encoding.js';

/** What the choice reads (SessionDeps' fields). */
export interface StartDeps {
  readonly cache: Pick<RuleCache, 'revision' | 'get'>;
  readonly changeLog: Pick<ChangeLog, 'logFloor' | 'windowSize' | 'changedRules'>;
  readonly storeId: string;
  readonly resumeMaxRevisions: number;
  readonly resumeMaxChanges: number;
}

export interface StartChoice {
  readonly mode: SyncMode;
  /** Why a snapshot ('' for a resume). */
  readonly why: string;
  /** A resume's rules changed since resume_revision, each with the revision of its last change (up to the cache's revision). */
  readonly changed: Map<bigint, bigint> | undefined;
}

/**
 * Decides snapshot or resume; the look-ups may take a while, during which
 * the cache moves on: the window is extended until it reaches the cache
 * (while `attaching()` holds).
 */
export async function chooseStart(d: StartDeps, hello: Hello, forceSnapshot: boolean, attaching: () => boolean): Promise<StartChoice> {
  const sameStore = hello.storeId === d.storeId;
  let mode = SyncMode.SYNC_MODE_SNAPSHOT;
  let why = 'resume_revision is 0';
  let changed: Map<bigint, bigint> | undefined;
  const r = hello.resumeRevision;
  if (r !== 0n && forceSnapshot) why = "an admin changed the node's labels since its state was built";
  else if (r !== 0n && !sameStore) why = `store_id ${hello.storeId || '(empty)'} is not this store's ${d.storeId}`;
  else if (r !== 0n && r > d.cache.revision) why = `resume_revision ${r} is newer than the current revision ${d.cache.revision}`;
  else if (r !== 0n) {
    const floor = await d.changeLog.logFloor();
    let upTo = d.cache.revision;
    if (r < floor) why = `resume_revision ${r} is older than the change-log retention (oldest resumable: ${floor})`;
    else if (upTo - r > BigInt(d.resumeMaxRevisions))
      why = `resume_revision ${r} is ${upTo - r} revisions behind (resume limit ${d.resumeMaxRevisions})`;
    else {
      const size = await d.changeLog.windowSize(r, upTo);
      if (size.changes > BigInt(d.resumeMaxChanges)) why = `${size.changes} rule changes since ${r}: a snapshot is cheaper`;
      else {
        changed = await d.changeLog.changedRules(r, upTo);
        while (d.cache.revision > upTo && attaching()) {
          const to = d.cache.revision;
          for (const [id, rev] of await d.changeLog.changedRules(upTo, to)) changed.set(id, rev);
          upTo = to;
        }
        mode = SyncMode.SYNC_MODE_RESUME;
        why = '';
      }
    }
  }
  return { mode, why, changed };
}

/**
 * A resume's catch-up, written part by part: one delta per revision after
 * `from` up to `to`, each rule changed in it an upsert if it exists and
 * `selects` the node now, else a delete (parts of d.chunkBytes). Returns the rules upserted.
 */
export function writeCatchUp(
  d: Pick<StartDeps, 'cache'> & { readonly chunkBytes: number },
  changed: ReadonlyMap<bigint, bigint>,
  from: bigint,
  to: bigint,
  selects: (sel: string) => boolean,
  write: (part: Buffer) => void,
): number {
  let sentRules = 0;
  const byRev = new Map<bigint, bigint[]>();
  for (const [id, v] of changed) {
    let l = byRev.get(v);
    if (!l) byRev.set(v, (l = []));
    l.push(id);
  }
  for (let v = from + 1n; v <= to; v++) {
    const upserts: string[] = [];
    const deletes: bigint[] = [];
    for (const id of byRev.get(v) ?? []) {
      const rule = d.cache.get(id);
      if (rule && selects(rule.sel)) upserts.push(rule.enc);
      else deletes.push(id);
    }
    sentRules += upserts.length;
    for (const p of encodeDelta(v, undefined, upserts, deletes, d.chunkBytes)) write(p);
  }
  return sentRules;
}
