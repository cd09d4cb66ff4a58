// fleetwall import <file|-> [--allow] [--egress] [--monitor] [--ttl 1h] [--comment c] [--selector k=v] [--atomic]
//                           [--format auto|plain|range|jsonl|csv] [--column name] [--allow-private]
//
// Streams the list in chunks (the server parses and validates, so line
// numbers and messages come from one place), shows progress on stderr and
// prints a summary: the format read, added, duplicate, invalid and skipped
// (local ranges of a deny list) with line numbers.
import { createReadStream, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { ClientWritableStream, ServiceError } from '@grpc/grpc-js';
import { Action, Direction, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import {
  BlocklistFormat,
  blocklistFormatToJSON,
  ImportRulesRequest,
  type ImportRulesResponse,
} from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { flagBool, flagList, flagString, parseArgs, parseDurationSeconds, parseLabels, UsageError } from '../args.js';
import { toCliError } from '../client.js';
import type { Context } from '../context.js';
import { CliError, ExitCode } from '../errors.js';
import { count, table } from '../output.js';
import { durationFromSeconds } from './block.js';
import { Progress } from '../progress.js';

const CHUNK_LINES = 8192;

const USAGE =
  'usage: fleetwall import <file|-> [--allow] [--egress] [--monitor] [--ttl 1h] [--comment text] [--selector k=v] [--atomic]\n' +
  '                        [--format auto|plain|range|jsonl|csv] [--column name] [--allow-private]';

const FORMATS: Readonly<Record<string, BlocklistFormat>> = {
  auto: BlocklistFormat.BLOCKLIST_FORMAT_UNSPECIFIED,
  plain: BlocklistFormat.BLOCKLIST_FORMAT_PLAIN,
  range: BlocklistFormat.BLOCKLIST_FORMAT_RANGE,
  jsonl: BlocklistFormat.BLOCKLIST_FORMAT_JSONL,
  csv: BlocklistFormat.BLOCKLIST_FORMAT_CSV,
};

/** --format: auto, plain, range, jsonl or csv. */
export function parseFormatFlag(v: string | undefined): BlocklistFormat {
  if (v === undefined) return BlocklistFormat.BLOCKLIST_FORMAT_UNSPECIFIED;
  const f = FORMATS[v.toLowerCase()];
  if (f === undefined) throw new UsageError(`--format must be one of ${Object.keys(FORMATS).join(', ')}, got "${v}"`);
  return f;
}

/** "csv" from BLOCKLIST_FORMAT_CSV. */
export function formatShortName(f: BlocklistFormat): string {
  return blocklistFormatToJSON(f).replace('BLOCKLIST_FORMAT_', '').toLowerCase();
}

function lineJson(l: ImportRulesResponse['invalidLines'][number]) {
  return { lineNumber: l.lineNumber.toString(), line: l.line, reason: l.reason, message: l.message };
}

export async function importCommand(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, {
    booleans: ['allow', 'egress', 'monitor', 'atomic', 'allow-private'],
    values: ['ttl', 'comment', 'format', 'column'],
    repeated: ['selector'],
  });
  if (p.positionals.length !== 1) throw new UsageError(USAGE);
  const format = parseFormatFlag(flagString(p, 'format'));
  if (flagBool(p, 'allow') && flagBool(p, 'monitor')) throw new UsageError('--monitor applies to deny lists only');
  const path = p.positionals[0]!;
  let total = 0;
  if (path !== '-') {
    try {
      total = statSync(path).size;
    } catch (e) {
      throw new CliError(`cannot read ${path}: ${(e as Error).message}`, ExitCode.Usage, 'FILE_NOT_READABLE');
    }
  }
  const ttl = flagString(p, 'ttl');
  const header = {
    action: flagBool(p, 'allow') ? Action.ACTION_ALLOW : Action.ACTION_DENY,
    direction: flagBool(p, 'egress') ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS,
    mode: flagBool(p, 'monitor') ? Mode.MODE_MONITOR : Mode.MODE_ENFORCE,
    selector: parseLabels(flagList(p, 'selector'), 'selector'),
    comment: flagString(p, 'comment') ?? `import ${path === '-' ? 'stdin' : path}`,
    atomic: flagBool(p, 'atomic'),
    format,
    column: flagString(p, 'column') ?? '',
    allowPrivate: flagBool(p, 'allow-private'),
    ...(ttl !== undefined ? { ttl: durationFromSeconds(parseDurationSeconds(ttl, 'ttl')) } : {}),
  };

  const c = ctx.clients();
  const progress = new Progress(ctx.err, ctx.config.stderrTty && !ctx.out.json, total);
  let call!: ClientWritableStream<ImportRulesRequest>;
  const done = new Promise<ImportRulesResponse>((resolve, reject) => {
    call = c.rules.importRules(c.metadata(), {}, (err: ServiceError | null, res?: ImportRulesResponse) => {
      if (err) reject(toCliError(err, c.target, c.tokenSource));
      else resolve(res!);
    });
  });
  done.catch(() => undefined); // surfaced below; avoid an unhandled rejection while still writing
  const send = async (msg: ImportRulesRequest): Promise<void> => {
    if (!call.write(msg)) await new Promise<void>((r) => call.once('drain', () => r()));
  };
  await send(ImportRulesRequest.fromPartial({ part: { $case: 'header', value: header } }));

  const input = path === '-' ? process.stdin : createReadStream(path);
  let bytes = 0;
  let lines = 0;
  let chunk: string[] = [];
  const rl = createInterface({ input, crlfDelay: Infinity });
  try {
    for await (const line of rl) {
      bytes += Buffer.byteLength(line) + 1;
      lines++;
      chunk.push(line);
      if (chunk.length >= CHUNK_LINES) {
        await send(ImportRulesRequest.fromPartial({ part: { $case: 'chunk', value: { lines: chunk } } }));
        chunk = [];
        progress.update(bytes, `${count(lines)} lines sent`);
      }
    }
    if (chunk.length > 0) await send(ImportRulesRequest.fromPartial({ part: { $case: 'chunk', value: { lines: chunk } } }));
  } catch (e) {
    // Cancelled, never half-closed: the server commits an import only when its stream ends normally.
    call.cancel();
    progress.finish();
    throw new CliError(
      `reading ${path === '-' ? 'stdin' : path} failed: ${(e as Error).message}; the import was cancelled and nothing was stored`,
      ExitCode.Usage,
      'FILE_NOT_READABLE',
    );
  }
  progress.update(bytes, `${count(lines)} lines sent, committing`);
  call.end();
  let res: ImportRulesResponse;
  try {
    res = await done;
  } finally {
    progress.finish();
  }

  if (ctx.out.json) {
    ctx.out.writeJson({
      lines: res.lines.toString(),
      added: res.added.toString(),
      duplicate: res.duplicate.toString(),
      invalid: res.invalid.toString(),
      revision: res.revision.toString(),
      format: formatShortName(res.format),
      formatDetected: res.formatDetected,
      ...(res.column !== '' ? { column: res.column } : {}),
      prefixes: res.prefixes.toString(),
      skippedLocal: res.skippedLocal.toString(),
      invalidLines: res.invalidLines.map(lineJson),
      skippedLocalLines: res.skippedLocalLines.map(lineJson),
    });
  } else {
    const how = `${formatShortName(res.format)}${res.column !== '' ? `, column ${res.column}` : ''}, ${res.formatDetected ? 'detected' : format === BlocklistFormat.BLOCKLIST_FORMAT_UNSPECIFIED ? 'no data lines' : 'as asked'}`;
    ctx.out.write(
      `imported ${path === '-' ? 'stdin' : path} (${how}): ${count(res.added)} added, ${count(res.duplicate)} duplicate, ${count(res.invalid)} invalid, ${count(res.skippedLocal)} skipped as local ranges (${count(res.lines)} lines${res.revision > 0n ? `, revision ${res.revision}` : ''})`,
    );
    if (res.skippedLocalLines.length > 0) {
      ctx.out.write(
        'warning: these lines overlap local ranges and were not imported (a deny there could cut off your own network; --allow-private imports them):',
      );
      ctx.out.write(
        table(
          ['LINE', 'PREFIX', 'WHY'],
          res.skippedLocalLines.map((l) => [l.lineNumber.toString(), l.line, l.message]),
        ),
      );
      if (res.skippedLocal > BigInt(res.skippedLocalLines.length))
        ctx.out.write(`... and ${count(res.skippedLocal - BigInt(res.skippedLocalLines.length))} more skipped`);
    }
    if (res.invalidLines.length > 0) {
      ctx.out.write(
        table(
          ['LINE', 'TEXT', 'PROBLEM'],
          res.invalidLines.map((l) => [l.lineNumber.toString(), l.line, l.message]),
        ),
      );
      if (res.invalid > BigInt(res.invalidLines.length))
        ctx.out.write(`... and ${count(res.invalid - BigInt(res.invalidLines.length))} more invalid lines`);
    }
  }
  if (res.invalid > 0n) {
    throw new CliError(
      header.atomic ? `${res.invalid} invalid lines: nothing was imported (--atomic)` : `${res.invalid} invalid lines were skipped`,
      ExitCode.Rejected,
      'INVALID_LINES',
    );
  }
}
