// `fleetwall demo` (what `npm start` runs). Filled in once the agent lands.
export async function runDemo(_argv: string[]): Promise<number> {
  process.stderr.write('fleetwall demo: not available yet in this build\n');
  return 1;
}
