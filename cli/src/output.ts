// Human output (aligned tables, short names) and machine output (--json).
import { Action, Direction, Mode, Rule } from '../../proto/gen/fleetwall/v1/rule.js';
import { jsonSafe, sanitizeCell, sanitizeText } from './sanitize.js';

export interface Out {
  readonly json: boolean;
  write(text: string): void;
  /** Clears the terminal and writes `text` (counters --watch). */
  redraw(text: string): void;
  /** One JSON document per line (--json) — bigint-safe. */
  writeJson(value: unknown): void;
}

/** Everything printed goes through here: stored text cannot carry terminal escapes out (sanitize.ts). */
export function makeOut(json: boolean, stream: NodeJS.WritableStream = process.stdout): Out {
  return {
    json,
    write: (text) => {
      const t = sanitizeText(text);
      stream.write(t.endsWith('\n') ? t : `${t}\n`);
    },
    redraw: (text) => {
      const t = sanitizeText(text);
      stream.write(`\x1b[H\x1b[2J${t.endsWith('\n') ? t : `${t}\n`}`);
    },
    writeJson: (value) => void stream.write(`${stringifyJson(value)}\n`),
  };
}

export function stringifyJson(value: unknown): string {
  return jsonSafe(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
}

/** Renders rows as an aligned table; numeric-looking columns right-aligned. */
export function table(headers: readonly string[], cells: ReadonlyArray<readonly string[]>): string {
  const rows = cells.map((r) => r.map(sanitizeCell));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => /^-?[\d.,]+[kMGT]?$|^-$/.test(r[i] ?? '')));
  const fmt = (cells: readonly string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(headers), ...rows.map(fmt)].join('\n');
}

export const actionName = (a: Action): string => (a === Action.ACTION_ALLOW ? 'allow' : a === Action.ACTION_DENY ? 'deny' : '?');
export const directionName = (d: Direction): string =>
  d === Direction.DIRECTION_EGRESS ? 'egress' : d === Direction.DIRECTION_INGRESS ? 'ingress' : '?';
export const modeName = (m: Mode): string => (m === Mode.MODE_MONITOR ? 'monitor' : m === Mode.MODE_ENFORCE ? 'enforce' : '?');

export function labelsText(labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {});
  return entries.length === 0 ? '*' : entries.map(([k, v]) => `${k}=${v}`).join(',');
}

/** "in 59m", "3h ago", "-" */
export function relativeTime(d: Date | undefined, now = Date.now()): string {
  if (!d) return '-';
  const s = Math.round((d.getTime() - now) / 1000);
  const abs = Math.abs(s);
  const txt =
    abs < 60
      ? `${abs}s`
      : abs < 3600
        ? `${Math.floor(abs / 60)}m`
        : abs < 86400
          ? `${Math.floor(abs / 3600)}h`
          : `${Math.floor(abs / 86400)}d`;
  return s >= 0 ? `in ${txt}` : `${txt} ago`;
}

/** 1234567n -> "1,234,567" */
export function count(n: bigint | number): string {
  return n.toLocaleString('en-US');
}

export function ruleRow(r: Rule): string[] {
  return [
    r.id.toString(),
    actionName(r.action),
    r.cidr,
    directionName(r.direction),
    modeName(r.mode),
    labelsText(r.selector),
    relativeTime(r.expireTime),
    r.source || '-',
    r.comment,
  ];
}

/** SOURCE: "list:NAME" for a subscribed list's rule, "-" for an operator's. */
export const RULE_HEADERS = ['ID', 'ACTION', 'CIDR', 'DIRECTION', 'MODE', 'SELECTOR', 'EXPIRES', 'SOURCE', 'COMMENT'] as const;

export function ruleJson(r: Rule): unknown {
  return Rule.toJSON(r);
}
