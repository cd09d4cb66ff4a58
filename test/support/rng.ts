// Deterministic PRNGs for tests (mulberry32): the same seed gives the same sequence on every run.

/** Uniform u32 values. */
export function rng32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Uniform values in [0, 1). */
export function rngUnit(seed: number): () => number {
  const next = rng32(seed);
  return () => next() / 4294967296;
}
