// Which prefix lengths of a table live in its hash (probed longest first,
// one exact-match lookup each) and which in its LPM trie. Pure.
//
// A length is placed when it first becomes populated: in the hash while
// fewer than K lengths use it, else in the trie. On a bulk load the most
// populated new lengths are placed first. A placed length never moves while
// it has entries, so no entry is ever in flight between structures.

export interface Placement {
  /** New lengths for the hash (descending). */
  readonly toHash: number[];
  /** New lengths for the trie. */
  readonly toTrie: number[];
}

/**
 * @param hashLens lengths in the hash now
 * @param newLens  lengths with no entries today that this batch populates,
 *                 with how many entries the batch brings for each
 * @param k        the most lengths the hash may hold
 */
export function placeNewLengths(hashLens: readonly number[], newLens: ReadonlyMap<number, number>, k: number): Placement {
  const order = [...newLens.entries()].sort((a, b) => b[1] - a[1] || b[0] - a[0]).map(([len]) => len);
  const room = Math.max(0, k - hashLens.length);
  const toHash = order.slice(0, room).sort((a, b) => b - a);
  const toTrie = order.slice(room).sort((a, b) => b - a);
  return { toHash, toTrie };
}

/** Merges lengths into a descending, duplicate-free list. */
export function mergeDesc(a: readonly number[], b: readonly number[]): number[] {
  return [...new Set([...a, ...b])].sort((x, y) => y - x);
}
