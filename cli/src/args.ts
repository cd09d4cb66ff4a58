import { DURATION_EXAMPLES, parseDurationMs } from '../../common/src/duration.js';
import { LabelTextError, parseLabelText } from '../../common/src/labels.js';

// A small argv parser: positionals, `--flag value`, `--flag=value`, boolean
// flags and repeatable flags. Unknown flags are usage errors.

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface FlagSpec {
  /** Flags that take no value. */
  readonly booleans?: readonly string[];
  /** Flags that take a value. */
  readonly values?: readonly string[];
  /** Value flags that may repeat (collected into arrays). */
  readonly repeated?: readonly string[];
}

export interface ParsedArgs {
  readonly positionals: string[];
  readonly flags: Map<string, string | boolean | string[]>;
}

export function parseArgs(argv: readonly string[], spec: FlagSpec): ParsedArgs {
  const booleans = new Set(spec.booleans ?? []);
  const values = new Set([...(spec.values ?? []), ...(spec.repeated ?? [])]);
  const repeated = new Set(spec.repeated ?? []);
  const positionals: string[] = [];
  const flags = new Map<string, string | boolean | string[]>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('--') || a === '-') {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    if (booleans.has(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      flags.set(name, true);
      continue;
    }
    if (!values.has(name)) {
      const known = [...booleans, ...values].map((f) => `--${f}`).join(', ');
      throw new UsageError(`unknown flag --${name}${known ? ` (this command takes ${known})` : ''}`);
    }
    let v: string | undefined;
    if (eq >= 0) v = a.slice(eq + 1);
    else {
      v = argv[i + 1];
      i++;
    }
    if (v === undefined) throw new UsageError(`--${name} needs a value`);
    if (repeated.has(name)) {
      const prev = flags.get(name);
      flags.set(name, [...(Array.isArray(prev) ? prev : []), v]);
    } else {
      flags.set(name, v);
    }
  }
  return { positionals, flags };
}

export function flagString(p: ParsedArgs, name: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function flagBool(p: ParsedArgs, name: string): boolean {
  return p.flags.get(name) === true;
}

export function flagList(p: ParsedArgs, name: string): string[] {
  const v = p.flags.get(name);
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

/** "k=v" flags (repeated or comma-separated) -> labels, with the labels grammar of common/. */
export function parseLabels(pairs: readonly string[], flag: string): Record<string, string> {
  try {
    return parseLabelText(pairs);
  } catch (e) {
    if (e instanceof LabelTextError) throw new UsageError(`--${flag}: ${e.message}`);
    throw e;
  }
}

/** A duration flag ("90s", "15m", "1h30m", "7d") -> seconds; zero is refused. */
export function parseDurationSeconds(text: string, flag: string): number {
  const ms = parseDurationMs(text);
  if (ms === undefined || ms <= 0) {
    throw new UsageError(`--${flag} "${text}" is not a duration: use e.g. ${DURATION_EXAMPLES}`);
  }
  return ms / 1000;
}

export function parsePositiveInt(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^[1-9][0-9]*$/.test(text)) throw new UsageError(`--${flag} must be a positive integer, got "${text}"`);
  return Number(text);
}
