// What bench:controlplane prints: one JSON object per line on stdout
// ({"metric": ..., "value": ..., ...context}); progress on stderr.

export function emit(metric: string, value: number, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ metric, value: round2(value), ...extra })}\n`);
}

export const round2 = (x: number): number => Math.round(x * 100) / 100;

export const log = (msg: string): void => {
  process.stderr.write(`[bench:controlplane] ${msg}\n`);
};
