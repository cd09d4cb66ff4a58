// Returning big transient buffers to the OS promptly. A counter read of a
// million slots allocates ~50 MB of ArrayBuffers (per-CPU values, totals)
// that are garbage a moment later; V8 would free them only at its next
// major GC, so the agent's RSS would swing by that much every interval.
// After such a read (and after a large apply) the agent asks for a major GC,
// concurrent where V8 can. Without access to gc() this is a no-op.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFn = (opts?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void | Promise<void>;

let gcFn: GcFn | null | undefined;

function getGc(): GcFn | null {
  if (gcFn !== undefined) return gcFn;
  try {
    const existing = (globalThis as { gc?: GcFn }).gc;
    if (existing) gcFn = existing;
    else {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as GcFn;
    }
  } catch {
    gcFn = null;
  }
  return gcFn;
}

/** Collects garbage now (asynchronously where supported) to free large dead buffers. */
export function releaseTransientMemory(): void {
  const gc = getGc();
  if (!gc) return;
  try {
    const r = gc({ type: 'major', execution: 'async' });
    if (r && typeof (r as Promise<void>).catch === 'function') (r as Promise<void>).catch(() => undefined);
  } catch {
    /* ignore */
  }
}
