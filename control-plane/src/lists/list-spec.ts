// A subscribed list's settings, validated at the edge: every field of a
// CreateList request is checked (name grammar, source scheme and length, the
// refresh interval's floor, format and column, the rule fields) before
// anything is fetched or stored. Pure.
import { resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Action, type Direction, type Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import type { RuleList } from '../../../proto/gen/fleetwall/v1/list_service.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { blocklistParser } from '../rules/blocklist-options.js';
import { directionOrDefault, modeOrDefault, requireAction } from '../rules/enums.js';
import { type Labels, selectorKey, validateSelector } from '../rules/selector.js';
import { checkComment, checkMonitorOnAllow, durationMs, type ValidationLimits } from '../rules/validate.js';

/** A list's settings as stored (the lists table) and as every refresh reads them. */
export interface ListSpec {
  readonly name: string;
  /** Normalized: http(s)://... or file:///absolute/path. */
  readonly url: string;
  readonly everyMs: number;
  /** BlocklistFormat (0: detect). */
  readonly format: number;
  readonly column: string;
  readonly action: Action;
  readonly direction: Direction;
  readonly mode: Mode;
  readonly selector: Labels;
  readonly selectorKey: string;
  readonly allowPrivate: boolean;
  readonly comment: string;
}

export interface ListLimits extends ValidationLimits {
  /** The shortest refresh interval (FLEETWALL_LIST_MIN_EVERY). */
  readonly minEveryMs: number;
  /** The directory file sources must be in (FLEETWALL_LIST_FILE_ROOT); undefined: file sources are refused. */
  readonly fileRoot: string | undefined;
}

/** True if `path` (absolute) lies inside `root`. */
export function insideRoot(path: string, root: string): boolean {
  const r = root.endsWith(sep) ? root : `${root}${sep}`;
  return resolve(path).startsWith(r);
}

export const NAME_GRAMMAR = /^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$/;
export const MAX_URL_LENGTH = 2048;
export const DEFAULT_EVERY_MS = 3_600_000;
export const MAX_EVERY_MS = 30 * 86_400_000;

/** The principal a list's writes are made as, and its rules' source: "list:NAME". */
export function listActor(name: string): string {
  return `list:${name}`;
}

export function checkListName(name: string, field = 'name'): string {
  if (!NAME_GRAMMAR.test(name)) {
    throw new FleetwallError(
      'INVALID_LIST_NAME',
      `${field} ${JSON.stringify(name.slice(0, 80))} is not a list name: 1 to 63 lower-case letters, digits, ".", "_" or "-", starting and ending with a letter or digit (e.g. spamhaus-drop)`,
      { field },
    );
  }
  return name;
}

function badSource(message: string): FleetwallError {
  return new FleetwallError('INVALID_LIST_SOURCE', `list.url: ${message}`, { field: 'list.url' });
}

/**
 * http(s) or file URLs only; file URLs name an absolute path on the control
 * plane's host, inside its FLEETWALL_LIST_FILE_ROOT (a list's invalid lines
 * are shown to its callers: a list must not read any file of the host).
 */
export function checkListUrl(raw: string, fileRoot: string | undefined): string {
  const text = raw.trim();
  if (text === '') throw badSource('a source is required: an http(s):// URL, or file:///PATH for a file on the control plane host');
  if (text.length > MAX_URL_LENGTH) throw badSource(`the URL has ${text.length} characters; at most ${MAX_URL_LENGTH} are accepted`);
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw badSource(`"${text.slice(0, 100)}" is not a URL: give http://..., https://... or file:///absolute/path`);
  }
  if (u.protocol === 'http:' || u.protocol === 'https:') {
    if (u.username !== '' || u.password !== '') throw badSource('credentials in the URL (user:password@) are not supported');
    return u.href;
  }
  if (u.protocol === 'file:') {
    if (u.host !== '' && u.host !== 'localhost') {
      throw badSource(`file URLs name a file on the control plane's own host; "${u.host}" is another host`);
    }
    if (u.pathname === '/' || u.pathname.endsWith('/')) throw badSource('a file URL must name a file, not a directory');
    const path = fileURLToPath(`file://${u.pathname}`);
    if (fileRoot === undefined) {
      throw badSource(
        'file sources are off on this control plane: set FLEETWALL_LIST_FILE_ROOT to the directory on its host that lists may read, or serve the file over http(s)',
      );
    }
    if (!insideRoot(path, fileRoot))
      throw badSource(`${path} is outside ${fileRoot} (FLEETWALL_LIST_FILE_ROOT), the only directory lists may read`);
    return `file://${u.pathname}`;
  }
  throw badSource(
    `the scheme "${u.protocol.replace(/:$/, '')}" is not supported: use http, https, or file (read on the control plane's host)`,
  );
}

export function checkEvery(ms: number | undefined, limits: ListLimits): number {
  if (ms === undefined) return Math.max(DEFAULT_EVERY_MS, limits.minEveryMs);
  if (!(ms >= limits.minEveryMs)) {
    throw new FleetwallError(
      'INVALID_LIST_INTERVAL',
      `list.every ${ms / 1000}s is too short: refresh at most every ${limits.minEveryMs / 1000}s (publishers such as Spamhaus ask for an hour or more)`,
      { field: 'list.every', min_ms: String(limits.minEveryMs) },
    );
  }
  if (ms > MAX_EVERY_MS) {
    throw new FleetwallError('INVALID_LIST_INTERVAL', `list.every ${ms / 1000}s is longer than 30 days`, { field: 'list.every' });
  }
  return ms;
}

/** A CreateList request's list -> ListSpec, or the first thing wrong with it. */
export function validateListSpec(list: RuleList | undefined, limits: ListLimits): ListSpec {
  if (!list) throw new FleetwallError('MISSING_FIELD', 'list is required: {name, url, every, ...}', { field: 'list' });
  const name = checkListName(list.name, 'list.name');
  const url = checkListUrl(list.url, limits.fileRoot);
  const everyMs = checkEvery(list.every ? durationMs(list.every) : undefined, limits);
  // The parser checks format and column together (a column with plain is an error).
  blocklistParser({ format: list.format, column: list.column }, 'list');
  const action = list.action === Action.ACTION_UNSPECIFIED ? Action.ACTION_DENY : requireAction(list.action, 'list.action');
  const direction = directionOrDefault(list.direction, 'list.direction');
  const mode = modeOrDefault(list.mode, 'list.mode');
  checkMonitorOnAllow(action, mode, 'list');
  const selector = validateSelector(list.selector, 'list.selector');
  const comment = list.comment === '' ? `list ${name}` : list.comment;
  checkComment(comment, limits, 'list.comment');
  return {
    name,
    url,
    everyMs,
    format: list.format,
    column: list.column,
    action,
    direction,
    mode,
    selector,
    selectorKey: selectorKey(selector),
    allowPrivate: list.allowPrivate,
    comment,
  };
}
