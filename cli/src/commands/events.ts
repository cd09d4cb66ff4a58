// fleetwall events [--follow] [--node N] [--rule ID] [--source CIDR] [--destination CIDR]
//                  [--proto tcp|udp|icmp] [--port P] [--verdict drop|would-drop] [--direction ingress|egress]
//                  [--since 5m] [--limit N] [--json] [--pcap FILE]
// fleetwall top [--rule ID] [--node N] [--window 1m] [--limit N] [--watch] [--interval 2s] [--json]
//
// Sampled drop events from InspectService.WatchEvents: a readable line per
// event (text from the server has its control characters stripped), one
// JSON object per line with --json, or a pcap file tcpdump and Wireshark
// read with --pcap. `top`: the top sources per rule (TopSources), a live
// table with --watch.

import { createWriteStream } from 'node:fs';
import type { ServiceError } from '@grpc/grpc-js';
import { DropEvent, EventVerdict } from '../../../proto/gen/fleetwall/v1/event.js';
import { EventFilter, TopSourcesRequest, TopSourcesResponse, WatchEventsRequest } from '../../../proto/gen/fleetwall/v1/inspect_service.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import { UsageError, flagBool, flagList, flagString, parseArgs, parseDurationSeconds, parsePositiveInt } from '../args.js';
import { toCliError, unary } from '../client.js';
import type { Context } from '../context.js';
import { count, table } from '../output.js';
import { pcapHeader, pcapRecord } from '../pcap.js';
import { durationFromSeconds } from './block.js';

/** Strips C0 and C1 control characters (and DEL) from text the server sent. */
export function clean(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

const PROTO_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6' };

function endpoint(addr: string, port: number, proto: number): string {
  const a = addr.includes(':') ? `[${clean(addr)}]` : clean(addr);
  return proto === 6 || proto === 17 ? `${a}:${port}` : a;
}

/** One readable line. */
export function eventLine(e: DropEvent): string {
  const t = e.time ? e.time.toISOString() : '-';
  const proto = PROTO_NAMES[e.protocol] ?? `proto-${e.protocol}`;
  const icmp = e.protocol === 1 || e.protocol === 58 ? ` type ${e.sourcePort} code ${e.destinationPort}` : '';
  const flags = e.protocol === 6 && e.tcpFlags ? ` flags 0x${e.tcpFlags.toString(16)}` : '';
  const verdict = e.verdict === EventVerdict.EVENT_VERDICT_WOULD_DROP ? 'would-drop' : 'drop';
  const dir = e.direction === Direction.DIRECTION_EGRESS ? 'egress' : 'ingress';
  const rule = e.ruleId === 0n ? 'default' : `rule ${e.ruleId}`;
  return `${t} ${clean(e.nodeName)} ${clean(e.interface)} ${dir} ${verdict} ${rule} ${proto} ${endpoint(e.source, e.sourcePort, e.protocol)} > ${endpoint(e.destination, e.destinationPort, e.protocol)}${icmp}${flags} len ${e.length} x${e.weight}`;
}

function listFlag(p: ReturnType<typeof parseArgs>, name: string): string[] {
  return flagList(p, name).flatMap((v) =>
    v
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x !== ''),
  );
}

function ids(values: string[], flag: string): bigint[] {
  return values.map((v) => {
    if (!/^\d{1,20}$/.test(v)) throw new UsageError(`--${flag}: "${v}" is not a rule id`);
    return BigInt(v);
  });
}

const EVENTS_USAGE =
  'usage: fleetwall events [--follow] [--node N] [--rule ID] [--source CIDR] [--destination CIDR] [--proto tcp|udp|icmp] [--port P] [--verdict drop|would-drop] [--direction ingress|egress] [--since 5m] [--limit N] [--pcap FILE]';

export async function eventsCommand(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, {
    booleans: ['follow'],
    values: ['since', 'limit', 'pcap'],
    repeated: ['node', 'rule', 'source', 'destination', 'proto', 'port', 'verdict', 'direction'],
  });
  if (p.positionals.length > 0) throw new UsageError(EVENTS_USAGE);
  const verdicts = listFlag(p, 'verdict').map((v) => {
    if (v === 'drop') return EventVerdict.EVENT_VERDICT_DROP;
    if (v === 'would-drop' || v === 'would_drop') return EventVerdict.EVENT_VERDICT_WOULD_DROP;
    throw new UsageError(`--verdict: "${v}" must be drop or would-drop`);
  });
  const directions = listFlag(p, 'direction').map((v) => {
    if (v === 'ingress') return Direction.DIRECTION_INGRESS;
    if (v === 'egress') return Direction.DIRECTION_EGRESS;
    throw new UsageError(`--direction: "${v}" must be ingress or egress`);
  });
  const ports = listFlag(p, 'port').map((v) => {
    if (!/^\d{1,10}$/.test(v)) throw new UsageError(`--port: "${v}" is not a number`);
    return Number(v);
  });
  const filter = EventFilter.fromPartial({
    nodeNames: listFlag(p, 'node'),
    ruleIds: ids(listFlag(p, 'rule'), 'rule'),
    verdicts,
    directions,
    sourceCidrs: listFlag(p, 'source'),
    destinationCidrs: listFlag(p, 'destination'),
    protocols: listFlag(p, 'proto'),
    ports,
  });
  const follow = flagBool(p, 'follow');
  const sinceText = flagString(p, 'since');
  // Without --follow: the history (10 minutes at most); with it, only new events unless --since.
  const since = sinceText ? new Date(Date.now() - parseDurationSeconds(sinceText, 'since') * 1000) : follow ? undefined : new Date(0);
  const limit = parsePositiveInt(flagString(p, 'limit'), 'limit', 0);
  const hasFilter = Object.values(filter).some((v) => (v as unknown[]).length > 0);
  const req = WatchEventsRequest.fromPartial({ allow: hasFilter ? [filter] : [], follow, limit, ...(since ? { since } : {}) });
  const pcapPath = flagString(p, 'pcap');
  const pcap = pcapPath ? createWriteStream(pcapPath) : null;
  pcap?.write(pcapHeader());
  const c = ctx.clients();
  const stream = c.inspect.watchEvents(req, c.metadata());
  const stop = () => stream.cancel();
  process.once('SIGINT', stop);
  let n = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (m: { events: DropEvent[]; missed: bigint }) => {
        if (m.missed > 0n) ctx.err.write(`fleetwall: ${m.missed} events missed (this client read too slowly)\n`);
        for (const e of m.events) {
          n++;
          if (pcap) pcap.write(pcapRecord(e));
          else if (ctx.out.json) ctx.out.writeJson(DropEvent.toJSON(e));
          else ctx.out.write(eventLine(e));
        }
      });
      stream.on('error', (err: ServiceError) => (err.code === 1 /* CANCELLED */ ? resolve() : reject(toCliError(err, c.target))));
      stream.on('end', () => resolve());
    });
  } finally {
    process.off('SIGINT', stop);
    if (pcap) {
      await new Promise<void>((r) => pcap.end(r));
      ctx.err.write(`fleetwall: wrote ${n} packets to ${pcapPath}\n`);
    }
  }
}

export function renderTop(r: TopSourcesResponse): string {
  const rows: string[][] = [];
  for (const rule of r.rules) {
    for (const s of rule.sources) {
      rows.push([
        rule.ruleId === 0n ? 'default' : rule.ruleId.toString(),
        clean(s.address),
        count(s.packets),
        count(s.events),
        s.nodeNames.map(clean).join(','),
        s.lastSeen ? s.lastSeen.toISOString() : '-',
      ]);
    }
  }
  const w = r.window ? `${Number(r.window.seconds)}s` : '-';
  return `${table(['RULE', 'ADDRESS', 'PACKETS~', 'EVENTS', 'NODES', 'LAST SEEN'], rows)}\nwindow ${w}; packets estimated from sampled events (summed weights)`;
}

export async function topCommand(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, { booleans: ['watch'], values: ['window', 'limit', 'node', 'interval', 'count'], repeated: ['rule'] });
  if (p.positionals.length > 0)
    throw new UsageError('usage: fleetwall top [--rule ID] [--node N] [--window 1m] [--limit N] [--watch] [--interval 2s]');
  const windowText = flagString(p, 'window');
  const req = TopSourcesRequest.fromPartial({
    ruleIds: ids(listFlag(p, 'rule'), 'rule'),
    limit: parsePositiveInt(flagString(p, 'limit'), 'limit', 0),
    nodeName: flagString(p, 'node') ?? '',
    ...(windowText ? { window: durationFromSeconds(parseDurationSeconds(windowText, 'window')) } : {}),
  });
  const c = ctx.clients();
  const once = async (redraw: boolean) => {
    const res = await unary(c, c.inspect, c.inspect.topSources, req);
    if (ctx.out.json) ctx.out.writeJson(TopSourcesResponse.toJSON(res));
    else ctx.out.write(`${redraw && ctx.config.stdoutTty ? '\x1b[H\x1b[2J' : ''}${renderTop(res)}`);
  };
  if (!flagBool(p, 'watch')) return once(false);
  const intervalText = flagString(p, 'interval');
  const ms = (intervalText ? parseDurationSeconds(intervalText, 'interval') : 2) * 1000;
  const max = parsePositiveInt(flagString(p, 'count'), 'count', Number.MAX_SAFE_INTEGER);
  let stopped = false;
  const stop = () => {
    stopped = true;
  };
  process.once('SIGINT', stop);
  try {
    for (let i = 0; i < max && !stopped; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, ms));
      if (!stopped) await once(i > 0);
    }
  } finally {
    process.off('SIGINT', stop);
  }
}
