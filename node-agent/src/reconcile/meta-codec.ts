// The pinned sync meta holds at most 16 bytes of store id, but a control
// plane's store id may be longer (a UUID is 36 characters). Longer ids are
// pinned as a 16-character tag ("~" + 15 base64url characters of its
// SHA-256) and the full id is kept in a small side file next to the agent's
// runtime state (default /run/fleetwall, lost on reboot like the pins). On
// start the tag is looked up there; an unknown tag resumes as "no store"
// (the control plane then sends a snapshot, which is always correct).

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SyncMeta } from '../datapath/datapath.js';

const MAX_PINNED_BYTES = 16;
const KEEP = 8;

export function storeIdTag(storeId: string): string {
  if (Buffer.byteLength(storeId, 'utf8') <= MAX_PINNED_BYTES && !storeId.startsWith('~')) return storeId;
  return `~${createHash('sha256').update(storeId).digest('base64url').slice(0, MAX_PINNED_BYTES - 1)}`;
}

export class MetaCodec {
  private readonly file: string | undefined;
  private known: Record<string, string> = {};

  /** `stateDir` undefined: no side file (long store ids cannot be resumed). */
  constructor(
    private readonly stateDir: string | undefined,
    private readonly pinDir: string,
  ) {
    if (stateDir === undefined) return;
    const h = createHash('sha256').update(pinDir).digest('hex').slice(0, 16);
    this.file = join(stateDir, `store-ids-${h}.json`);
    try {
      const parsed = JSON.parse(readFileSync(this.file, 'utf8')) as { pinDir?: string; tags?: Record<string, string> };
      if (parsed.pinDir === pinDir && parsed.tags && typeof parsed.tags === 'object') this.known = parsed.tags;
    } catch {
      /* none yet */
    }
  }

  /** The meta as pinned (store id fits in 16 bytes). Records long ids first (write-ahead). */
  toPinned(meta: SyncMeta): SyncMeta {
    const tag = storeIdTag(meta.storeId);
    if (tag === meta.storeId) return meta;
    if (this.known[tag] !== meta.storeId && this.file && this.stateDir) {
      const entries = Object.entries(this.known).filter(([t]) => t !== tag).slice(-(KEEP - 1));
      this.known = Object.fromEntries([...entries, [tag, meta.storeId]]);
      mkdirSync(this.stateDir, { recursive: true });
      const tmp = `${this.file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify({ pinDir: this.pinDir, tags: this.known }) + '\n');
      renameSync(tmp, this.file);
    }
    return { revision: meta.revision, storeId: tag };
  }

  /** The meta as the protocol knows it; an unknown tag means no store (snapshot). */
  fromPinned(meta: SyncMeta): SyncMeta {
    if (!meta.storeId.startsWith('~')) return meta;
    const full = this.known[meta.storeId];
    if (full !== undefined) return { revision: meta.revision, storeId: full };
    return { revision: 0n, storeId: '' };
  }
}
