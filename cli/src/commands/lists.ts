// fleetwall lists add|ls|get|refresh|rm: subscriptions to published blocklists
// (the control plane's ListService). The control plane fetches the lists; a
// --file path is read on the control plane's host.
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  CreateListRequest,
  DeleteListRequest,
  GetListRequest,
  RefreshListRequest,
  RefreshOutcome,
  type RefreshResult,
  type RuleList,
  RuleList as RuleListMsg,
  RefreshResult as RefreshResultMsg,
} from '../../../proto/gen/fleetwall/v1/list_service.js';
import { Action, Direction, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import { flagBool, flagList, flagString, parseArgs, parseDurationSeconds, parseLabels, UsageError } from '../args.js';
import { unary } from '../client.js';
import type { Context } from '../context.js';
import { CliError, ExitCode } from '../errors.js';
import { actionName, count, directionName, labelsText, modeName, relativeTime, table } from '../output.js';
import { durationFromSeconds } from './block.js';
import { formatShortName, parseFormatFlag } from './import.js';

const USAGE = `usage:
  fleetwall lists add <name> --url URL|--file PATH [--every 1h] [--format auto|plain|range|jsonl|csv] [--column name]
                             [--action deny|allow] [--selector k=v] [--monitor] [--egress] [--allow-private] [--comment text]
  fleetwall lists ls
  fleetwall lists get <name>
  fleetwall lists refresh <name> [--force]
  fleetwall lists rm <name>
--file names a file on the control plane's host (an absolute path), not this machine's.`;

/** Adding or refreshing a large list takes a while: the call's deadline. */
const LONG_CALL_MS = 15 * 60_000;

const OUTCOMES: Readonly<Record<number, string>> = {
  [RefreshOutcome.REFRESH_OUTCOME_APPLIED]: 'applied',
  [RefreshOutcome.REFRESH_OUTCOME_UNCHANGED]: 'unchanged',
  [RefreshOutcome.REFRESH_OUTCOME_NOT_MODIFIED]: 'not modified',
  [RefreshOutcome.REFRESH_OUTCOME_FETCH_FAILED]: 'fetch failed',
  [RefreshOutcome.REFRESH_OUTCOME_PARSE_FAILED]: 'parse failed',
  [RefreshOutcome.REFRESH_OUTCOME_TOO_MANY_INVALID]: 'too many invalid',
  [RefreshOutcome.REFRESH_OUTCOME_SHRINK_REFUSED]: 'shrink refused',
};

function failed(r: RefreshResult | undefined): boolean {
  return (
    r !== undefined &&
    r.outcome !== RefreshOutcome.REFRESH_OUTCOME_APPLIED &&
    r.outcome !== RefreshOutcome.REFRESH_OUTCOME_UNCHANGED &&
    r.outcome !== RefreshOutcome.REFRESH_OUTCOME_NOT_MODIFIED
  );
}

function every(l: RuleList): string {
  const s = Number(l.every?.seconds ?? 0n);
  return s % 86400 === 0 ? `${s / 86400}d` : s % 3600 === 0 ? `${s / 3600}h` : s % 60 === 0 ? `${s / 60}m` : `${s}s`;
}

function lastRefreshText(l: RuleList): string {
  const r = l.lastRefresh;
  return r ? `${relativeTime(r.startTime)} ${OUTCOMES[r.outcome] ?? '?'}` : '-';
}

function listRow(l: RuleList): string[] {
  return [
    l.name,
    l.url,
    every(l),
    `${actionName(l.action)}${l.mode === Mode.MODE_MONITOR ? ' (monitor)' : ''}`,
    count(l.entries),
    lastRefreshText(l),
    failed(l.lastRefresh) ? l.lastRefresh!.message : '-',
    relativeTime(l.nextRefreshTime),
  ];
}

const HEADERS = ['NAME', 'SOURCE', 'EVERY', 'ACTION', 'ENTRIES', 'LAST REFRESH', 'LAST ERROR', 'NEXT RUN'];

function resultText(r: RefreshResult): string {
  return `${OUTCOMES[r.outcome] ?? '?'}: ${r.message}${r.revision > 0n ? ` (revision ${r.revision})` : ''}`;
}

function writeLines(ctx: Context, r: RefreshResult): void {
  if (r.invalidLines.length > 0) {
    ctx.out.write(
      table(
        ['LINE', 'TEXT', 'PROBLEM'],
        r.invalidLines.map((l) => [l.lineNumber.toString(), l.line, l.message]),
      ),
    );
  }
  if (r.skippedLocalLines.length > 0) {
    ctx.out.write(`skipped (local ranges; --allow-private keeps them): ${count(r.skippedLocal)}`);
    ctx.out.write(
      table(
        ['LINE', 'PREFIX', 'WHY'],
        r.skippedLocalLines.map((l) => [l.lineNumber.toString(), l.line, l.message]),
      ),
    );
  }
}

function oneName(argv: string[], sub: string, booleans: string[] = []) {
  const p = parseArgs(argv, { booleans });
  if (p.positionals.length !== 1) throw new UsageError(`usage: fleetwall lists ${sub} <name>${booleans.map((b) => ` [--${b}]`).join('')}`);
  return { name: p.positionals[0]!, p };
}

export async function listsCommand(ctx: Context, argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'add':
      return addList(ctx, rest);
    case 'ls':
    case 'list':
      return showLists(ctx, rest);
    case 'get':
      return getList(ctx, rest);
    case 'refresh':
      return refreshList(ctx, rest);
    case 'rm':
    case 'delete':
      return removeList(ctx, rest);
    default:
      throw new UsageError(sub ? `unknown subcommand "lists ${sub}"\n${USAGE}` : USAGE);
  }
}

async function addList(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, {
    booleans: ['monitor', 'egress', 'allow-private'],
    values: ['url', 'file', 'every', 'format', 'column', 'action', 'comment'],
    repeated: ['selector'],
  });
  if (p.positionals.length !== 1) throw new UsageError(USAGE);
  const url = flagString(p, 'url');
  const file = flagString(p, 'file');
  if ((url === undefined) === (file === undefined)) throw new UsageError('give the list source as --url URL or --file PATH (one of them)');
  if (file !== undefined && !isAbsolute(file)) {
    throw new UsageError(`--file ${file}: give an absolute path; the control plane reads it on its own host, not from this directory`);
  }
  const action = flagString(p, 'action') ?? 'deny';
  if (action !== 'deny' && action !== 'allow') throw new UsageError(`--action must be deny or allow, got "${action}"`);
  if (action === 'allow' && flagBool(p, 'monitor')) throw new UsageError('--monitor applies to deny lists only');
  const everyText = flagString(p, 'every');
  const req = CreateListRequest.fromPartial({
    list: {
      name: p.positionals[0]!,
      url: url ?? pathToFileURL(file!).href,
      ...(everyText !== undefined ? { every: durationFromSeconds(parseDurationSeconds(everyText, 'every')) } : {}),
      format: parseFormatFlag(flagString(p, 'format')),
      column: flagString(p, 'column') ?? '',
      action: action === 'allow' ? Action.ACTION_ALLOW : Action.ACTION_DENY,
      direction: flagBool(p, 'egress') ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS,
      mode: flagBool(p, 'monitor') ? Mode.MODE_MONITOR : Mode.MODE_ENFORCE,
      selector: parseLabels(flagList(p, 'selector'), 'selector'),
      allowPrivate: flagBool(p, 'allow-private'),
      comment: flagString(p, 'comment') ?? '',
    },
  });
  const c = ctx.clients();
  const res = await unary(c, c.lists, c.lists.createList, req, LONG_CALL_MS);
  const l = res.list!;
  if (ctx.out.json) {
    ctx.out.writeJson(RuleListMsg.toJSON(l));
    return;
  }
  const r = l.lastRefresh;
  ctx.out.write(
    `added list ${l.name}: ${count(l.entries)} rules (${actionName(l.action)}, ${directionName(l.direction)}, ${modeName(l.mode)}, selector ${labelsText(l.selector)}), read as ${r ? formatShortName(r.format) : '?'}; refreshed every ${every(l)}, next ${relativeTime(l.nextRefreshTime)}${r && r.revision > 0n ? ` (revision ${r.revision})` : ''}`,
  );
  if (r) writeLines(ctx, r);
}

async function showLists(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, {});
  if (p.positionals.length > 0) throw new UsageError(USAGE);
  const c = ctx.clients();
  const res = await unary(c, c.lists, c.lists.listLists, {});
  if (ctx.out.json) {
    for (const l of res.lists) ctx.out.writeJson(RuleListMsg.toJSON(l));
    return;
  }
  ctx.out.write(
    res.lists.length === 0 ? 'no lists: add one with `fleetwall lists add NAME --url URL`' : table(HEADERS, res.lists.map(listRow)),
  );
}

async function getList(ctx: Context, argv: string[]): Promise<void> {
  const { name } = oneName(argv, 'get');
  const c = ctx.clients();
  const res = await unary(c, c.lists, c.lists.getList, GetListRequest.fromPartial({ name }));
  const l = res.list!;
  if (ctx.out.json) {
    ctx.out.writeJson(RuleListMsg.toJSON(l));
    return;
  }
  ctx.out.write(table(HEADERS, [listRow(l)]));
  if (l.lastRefresh) {
    ctx.out.write(`last refresh: ${resultText(l.lastRefresh)}`);
    writeLines(ctx, l.lastRefresh);
  }
}

async function refreshList(ctx: Context, argv: string[]): Promise<void> {
  const { name, p } = oneName(argv, 'refresh', ['force']);
  const c = ctx.clients();
  const res = await unary(
    c,
    c.lists,
    c.lists.refreshList,
    RefreshListRequest.fromPartial({ name, force: flagBool(p, 'force') }),
    LONG_CALL_MS,
  );
  const r = res.result!;
  if (ctx.out.json) ctx.out.writeJson({ list: RuleListMsg.toJSON(res.list!), result: RefreshResultMsg.toJSON(r) });
  else {
    ctx.out.write(`${name}: ${resultText(r)}`);
    writeLines(ctx, r);
  }
  if (failed(r)) {
    throw new CliError(
      `the refresh of ${name} did not apply (${OUTCOMES[r.outcome]}); the list keeps its last good set`,
      ExitCode.Failure,
      'REFRESH_NOT_APPLIED',
    );
  }
}

async function removeList(ctx: Context, argv: string[]): Promise<void> {
  const { name } = oneName(argv, 'rm');
  const c = ctx.clients();
  const res = await unary(c, c.lists, c.lists.deleteList, DeleteListRequest.fromPartial({ name }), LONG_CALL_MS);
  if (ctx.out.json) ctx.out.writeJson({ removed: res.removed.toString(), revision: res.revision.toString() });
  else ctx.out.write(`removed list ${name} and its ${count(res.removed)} rules${res.revision > 0n ? ` (revision ${res.revision})` : ''}`);
}
