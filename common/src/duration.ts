// Human durations, one grammar for every fleetwall tool: "250ms", "90s",
// "15m", "1h30m", "7d", "1.5h". A unit is required ("10" could be seconds or
// milliseconds, so it is refused). Pure.

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Milliseconds, or undefined if `text` is not a duration. Never negative. */
export function parseDurationMs(text: string): number | undefined {
  const s = text.trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
  let total = 0;
  let end = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    total += Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
    end = re.lastIndex;
  }
  if (s === '' || end !== s.length) return undefined;
  return Math.round(total);
}

export const DURATION_EXAMPLES = '250ms, 90s, 15m, 1h30m, 7d';
