// fleetwall nodes ls [--selector k=v] [--connected] (every page) | get <name> | label <name> k=v,... | revoke <name>
//                | rm <name> [<name>...] (refused while a node's agent is connected)
import { EgressMode, type Node, SyncState, XdpMode } from '../../../proto/gen/fleetwall/v1/node.js';
import {
  DeleteNodeRequest,
  GetNodeRequest,
  ListNodesRequest,
  type ListNodesResponse,
  RevokeNodeRequest,
  UpdateNodeRequest,
} from '../../../proto/gen/fleetwall/v1/node_service.js';
import { Node as NodeMsg } from '../../../proto/gen/fleetwall/v1/node.js';
import { flagBool, flagList, parseArgs, parseLabels, UsageError } from '../args.js';
import { unary } from '../client.js';
import type { Context } from '../context.js';
import { labelsText, relativeTime, table } from '../output.js';

const USAGE = [
  'usage: fleetwall nodes ls [--selector k=v] [--connected]',
  '       fleetwall nodes get <name>',
  "       fleetwall nodes label <name> k=v[,k2=v2...]   set an enrolled node's labels (all of them; admin)",
  '       fleetwall nodes revoke <name>                 refuse its certificates, close its stream (admin)',
  '       fleetwall nodes rm <name> [<name>...]         forget nodes whose agents are gone (admin)',
].join('\n');

export const syncStateName = (s: SyncState): string =>
  ({
    [SyncState.SYNC_STATE_SYNCING]: 'syncing',
    [SyncState.SYNC_STATE_IN_SYNC]: 'in-sync',
    [SyncState.SYNC_STATE_DEGRADED]: 'degraded',
    [SyncState.SYNC_STATE_DISCONNECTED]: 'disconnected',
  })[s as number] ?? '-';

function ifaceText(n: Node): string {
  const xdp = (m: XdpMode) => (m === XdpMode.XDP_MODE_NATIVE ? 'xdp' : m === XdpMode.XDP_MODE_GENERIC ? 'xdp-generic' : 'no-xdp');
  const eg = (m: EgressMode) => (m === EgressMode.EGRESS_MODE_TCX ? 'tcx' : m === EgressMode.EGRESS_MODE_CLSACT ? 'clsact' : 'no-egress');
  return n.interfaces.map((i) => `${i.name}(${xdp(i.xdpMode)},${eg(i.egressMode)})`).join(' ') || '-';
}

function nodeRow(n: Node, revision: bigint): string[] {
  const lag = revision > n.appliedRevision ? ` (-${revision - n.appliedRevision})` : '';
  return [
    n.name,
    n.connected ? 'yes' : 'no',
    syncStateName(n.syncState),
    `${n.appliedRevision}${lag}`,
    n.rulesInKernel.toString(),
    kernelMemoryText(n),
    relativeTime(n.lastSeenTime),
    n.agentVersion || '-',
    labelsText(n.labels),
    ifaceText(n),
    [n.lastNack ? `NACK r${n.nackedRevision}: ${n.lastNack.message}` : '', resizeProblem(n)].filter((p) => p !== '').join('; '),
  ];
}

const HEADERS = ['NODE', 'CONNECTED', 'STATE', 'APPLIED', 'RULES', 'KERNEL MEM', 'LAST SEEN', 'VERSION', 'LABELS', 'INTERFACES', 'PROBLEM'];

/** The kernel memory of the node's maps and the fill of its fullest table: "112.3 MB, 95% full" ("-" before its first status). */
function kernelMemoryText(n: Node): string {
  if (n.kernelMemoryBytes === 0n) return '-';
  const mb = Number(n.kernelMemoryBytes) / 1e6;
  return `${mb >= 10 ? mb.toFixed(0) : mb.toFixed(1)} MB, ${Math.round(n.mapFillRatio * 100)}% full`;
}

/** Characters of a failed resize's reason shown in the table (--json has all of it). */
const REASON_CHARS = 120;

/**
 * Failed resizes of the node's maps: "map resizes failed: 2 grows; last 3m ago: grow: <reason>" (the reason's
 * first line), or "... (a resize went in since)"; '' when none failed. A node whose grows fail refuses rules once full.
 */
function resizeProblem(n: Node): string {
  const f = n.mapResizeFailures;
  if (!f || (f.grow === 0n && f.shrink === 0n && f.lastReason === '')) return '';
  const plural = (k: bigint, what: string) => `${k} ${what}${k === 1n ? '' : 's'}`;
  const counts = [f.grow > 0n ? plural(f.grow, 'grow') : '', f.shrink > 0n ? plural(f.shrink, 'shrink') : ''].filter((c) => c !== '');
  const head = `map resizes failed: ${counts.join(', ') || 'some'}`;
  if (f.lastReason === '') return `${head} (a resize went in since)`;
  const line = f.lastReason.split('\n', 1)[0]!.trim();
  const reason = line.length > REASON_CHARS ? `${line.slice(0, REASON_CHARS)}…` : line;
  return `${head}; last ${relativeTime(f.lastTime)}: ${reason}`;
}

export async function nodesCommand(ctx: Context, argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const c = ctx.clients();
  if (sub === 'ls' || sub === 'list') {
    const p = parseArgs(rest, { booleans: ['connected'], repeated: ['selector'] });
    const selector = parseLabels(flagList(p, 'selector'), 'selector');
    const nodes: Node[] = [];
    let page: ListNodesResponse;
    let token = '';
    do {
      page = await unary(
        c,
        c.nodes,
        c.nodes.listNodes,
        ListNodesRequest.fromPartial({ selector, connectedOnly: flagBool(p, 'connected'), pageSize: 1000, pageToken: token }),
      );
      nodes.push(...page.nodes);
      token = page.nextPageToken;
    } while (token !== '');
    const res = { nodes, revision: page.revision };
    if (ctx.out.json) {
      for (const n of res.nodes) ctx.out.writeJson(NodeMsg.toJSON(n));
      return;
    }
    ctx.out.write(
      res.nodes.length === 0
        ? 'no nodes have connected yet'
        : table(
            HEADERS,
            res.nodes.map((n) => nodeRow(n, res.revision)),
          ),
    );
    ctx.out.write(`${res.nodes.length} nodes, ${res.nodes.filter((n) => n.connected).length} connected, current revision ${res.revision}`);
    return;
  }
  if (sub === 'get') {
    const p = parseArgs(rest, {});
    if (p.positionals.length !== 1) throw new UsageError(USAGE);
    const res = await unary(c, c.nodes, c.nodes.getNode, GetNodeRequest.fromPartial({ name: p.positionals[0]! }));
    if (ctx.out.json) ctx.out.writeJson(NodeMsg.toJSON(res.node!));
    else ctx.out.write(table(HEADERS, [nodeRow(res.node!, res.node!.appliedRevision)]));
    return;
  }
  if (sub === 'label') {
    const p = parseArgs(rest, {});
    if (p.positionals.length < 1) throw new UsageError(USAGE);
    const [name, ...pairs] = p.positionals as [string, ...string[]];
    const res = await unary(c, c.nodes, c.nodes.updateNode, UpdateNodeRequest.fromPartial({ name, labels: parseLabels(pairs, 'labels') }));
    if (ctx.out.json) ctx.out.writeJson({ name: res.name, labels: res.labels });
    else ctx.out.write(`node ${res.name}: labels ${labelsText(res.labels) || '(none)'}; its stream resyncs with them`);
    return;
  }
  if (sub === 'revoke') {
    const p = parseArgs(rest, {});
    if (p.positionals.length !== 1) throw new UsageError(USAGE);
    const res = await unary(c, c.nodes, c.nodes.revokeNode, RevokeNodeRequest.fromPartial({ name: p.positionals[0]! }));
    if (ctx.out.json) ctx.out.writeJson({ name: res.name, revokedCertificates: res.revokedCertificates });
    else
      ctx.out.write(
        `node ${res.name}: ${res.revokedCertificates} certificate(s) revoked; its stream is closed and it needs a new join token to come back`,
      );
    return;
  }
  if (sub === 'rm' || sub === 'delete') {
    const p = parseArgs(rest, {});
    if (p.positionals.length === 0) throw new UsageError(USAGE);
    for (const name of p.positionals) {
      await unary(c, c.nodes, c.nodes.deleteNode, DeleteNodeRequest.fromPartial({ name }));
      if (ctx.out.json) ctx.out.writeJson({ deleted: name });
      else ctx.out.write(`deleted node ${name}`);
    }
    return;
  }
  throw new UsageError(sub ? `unknown subcommand "nodes ${sub}"\n${USAGE}` : USAGE);
}
