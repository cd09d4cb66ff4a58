// Shared by the data-plane tests: unique pin directories that are always removed.

import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { type BpfDatapath, type BpfDatapathOptions, openDatapath, removePins } from '../../node-agent/src/datapath/bpf-datapath.js';

export function uniquePinDir(tag: string): string {
  return `/sys/fs/bpf/fleetwall-test-${tag}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** Opens a datapath on a fresh pin dir, runs fn, then uninstalls whatever is left. */
export async function withDatapath<T>(
  tag: string,
  opts: Partial<BpfDatapathOptions>,
  fn: (dp: BpfDatapath, pinDir: string) => Promise<T> | T,
): Promise<T> {
  const pinDir = uniquePinDir(tag);
  const dp = openDatapath({ capacity: { prefixesPerTable: 8192, counterSlots: 4096 }, ...opts, pinDir });
  try {
    return await fn(dp, pinDir);
  } finally {
    cleanupPins(pinDir);
    dp.close();
  }
}

/** Uninstalls (detaching anything still attached) and removes the pin dir. */
export function cleanupPins(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  try {
    const dp = openDatapath({ pinDir });
    dp.uninstall();
  } catch {
    /* fall through: remove what is there */
  }
  removePins(pinDir);
}
