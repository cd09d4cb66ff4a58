// Bulk writes committed by this process, waiting for its revision feed: the
// feed applies them from memory instead of reading a million rows back.
import type { BulkHandoff, BulkPayload } from '../store/rule-import.js';

export class LocalBulkWrites implements BulkHandoff {
  private readonly pending = new Map<bigint, BulkPayload>();

  put(writeId: bigint, p: BulkPayload): void {
    this.pending.set(writeId, p);
  }

  drop(writeId: bigint): void {
    this.pending.delete(writeId);
  }

  take(writeId: bigint): BulkPayload | undefined {
    const p = this.pending.get(writeId);
    this.pending.delete(writeId);
    return p;
  }
}
