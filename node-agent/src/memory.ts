// Returning big transient buffers to the OS promptly. A large snapshot or
// start-up load leaves tens of MB of dead buffers behind (the decoded gRPC
// chunks, the datapath's per-call key/value buffers) that V8 would free only
// at its next major GC. After such work the agent asks for a major GC,
// concurrent where V8 can. Without access to gc() this is a no-op. (Counter
// reads and plan execution allocate nothing per rule: no GC after them.)

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
