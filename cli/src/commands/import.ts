// fleetwall import <file|-> [--allow] [--egress] [--monitor] [--ttl 1h] [--comment c] [--selector k=v] [--atomic]
//
// Streams the list in chunks (the server parses and validates, so line
// numbers and messages come from one place), shows progress on stderr and
// prints a summary: added, duplicate, invalid with line numbers.
import { createReadStream, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { ClientWritableStream, ServiceError } from '@grpc/grpc-js';
import { Action, Direction, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import { ImportRulesRequest, type ImportRulesResponse } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { flagBool, flagList, flagString, parseArgs, parseDurationSeconds, parseLabels, UsageError } from '../args.js';
import { toCliError } from '../client.js';
import type { Context } from '../context.js';
import { CliError, ExitCode } from '../errors.js';
import { count, table } from '../output.js';
import { durationFromSeconds } from './block.js';
import { Progress } from '../progress.js';

const CHUNK_LINES = 8192;

export async function importCommand(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, {
    booleans: ['allow', 'egress', 'monitor', 'atomic'],
    values: ['ttl', 'comment'],
    repeated: ['selector'],
  });
  if (p.positionals.length !== 1) {
    throw new UsageError(
      'usage: fleetwall import <file|-> [--allow] [--egress] [--monitor] [--ttl 1h] [--comment text] [--selector k=v] [--atomic]',
    );
  }
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
    call.cancel();
    throw new CliError(`reading ${path} failed: ${(e as Error).message}`, ExitCode.Usage, 'FILE_NOT_READABLE');
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
      invalidLines: res.invalidLines.map((l) => ({
        lineNumber: l.lineNumber.toString(),
        line: l.line,
        reason: l.reason,
        message: l.message,
      })),
    });
  } else {
    ctx.out.write(
      `imported ${path === '-' ? 'stdin' : path}: ${count(res.added)} added, ${count(res.duplicate)} duplicate, ${count(res.invalid)} invalid (${count(res.lines)} lines${res.revision > 0n ? `, revision ${res.revision}` : ''})`,
    );
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
