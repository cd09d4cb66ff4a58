// fleetwall policy create|ls|get|rm and fleetwall bans ls: detection
// policies and the bans they hold (the control plane's PolicyService,
// issue 18). Validation is the control plane's (INVALID_POLICY names the
// field); the CLI only turns flags into the request.
import {
  BanScope,
  type Ban,
  Ban as BanMsg,
  type DetectionPolicy,
  DetectionPolicy as PolicyMsg,
  PolicyProtocol,
  SourceGrouping,
} from '../../../proto/gen/fleetwall/v1/policy.js';
import { CreatePolicyRequest } from '../../../proto/gen/fleetwall/v1/policy_service.js';
import { Direction, Mode } from '../../../proto/gen/fleetwall/v1/rule.js';
import { flagBool, flagList, flagString, parseArgs, parseDurationSeconds, parseLabels, UsageError } from '../args.js';
import { unary } from '../client.js';
import type { Context } from '../context.js';
import { count, labelsText, relativeTime, table } from '../output.js';
import { durationFromSeconds } from './block.js';

const USAGE = `usage:
  fleetwall policy create <name> (--pps N | --bps N) [--window 1s] [--proto any|tcp|udp|icmp] [--ports 22,8000-8080] [--syn]
                                 [--egress] [--group address|network] [--ban 10m] [--factor 2] [--max-ban 24h] [--jitter 0.1]
                                 [--scope fleet|node|selector] [--scope-selector k=v] [--selector k=v] [--monitor]
                                 [--max-bans-per-second 50] [--merge-threshold N] [--comment text]
      --merge-threshold N: when N or more sources of one /24 (IPv6: /64) hold bans of the policy, ban the
                           network instead (never one holding an allowed, protected or failsafe address)
  fleetwall policy ls
  fleetwall policy get <name>
  fleetwall policy rm <name>
  fleetwall bans ls [--policy name]`;

const PROTOS: Readonly<Record<string, PolicyProtocol>> = {
  any: PolicyProtocol.POLICY_PROTOCOL_ANY,
  tcp: PolicyProtocol.POLICY_PROTOCOL_TCP,
  udp: PolicyProtocol.POLICY_PROTOCOL_UDP,
  icmp: PolicyProtocol.POLICY_PROTOCOL_ICMP,
};
const SCOPES: Readonly<Record<string, BanScope>> = {
  fleet: BanScope.BAN_SCOPE_FLEET,
  node: BanScope.BAN_SCOPE_NODE,
  selector: BanScope.BAN_SCOPE_SELECTOR,
};

function pick<T>(table: Readonly<Record<string, T>>, v: string | undefined, flag: string, fallback: T): T {
  if (v === undefined) return fallback;
  const out = table[v];
  if (out === undefined) throw new UsageError(`--${flag} must be one of ${Object.keys(table).join(', ')}, got "${v}"`);
  return out;
}

function uint(v: string | undefined, flag: string): bigint {
  if (v === undefined) return 0n;
  if (!/^[0-9]{1,18}$/.test(v)) throw new UsageError(`--${flag} must be a whole number, got "${v}"`);
  return BigInt(v);
}

/** "22,8000-8080" -> ranges (the control plane checks 1..65535). */
function parsePorts(v: string | undefined): { first: number; last: number }[] {
  if (v === undefined || v === '') return [];
  return v.split(',').map((part) => {
    const m = /^(\d{1,6})(?:-(\d{1,6}))?$/.exec(part.trim());
    if (!m) throw new UsageError(`--ports: "${part}" is not a port or a range like 8000-8080`);
    return { first: Number(m[1]), last: m[2] ? Number(m[2]) : 0 };
  });
}

const secs = (d: { seconds: bigint; nanos: number } | undefined) => (d ? Number(d.seconds) + d.nanos / 1e9 : 0);

function durText(s: number): string {
  return s >= 3600 && s % 3600 === 0 ? `${s / 3600}h` : s >= 60 && s % 60 === 0 ? `${s / 60}m` : `${s}s`;
}

function matchText(p: DetectionPolicy): string {
  const m = p.match!;
  const proto = Object.entries(PROTOS).find(([, v]) => v === m.protocol)?.[0] ?? '?';
  const ports = m.ports.map((r) => (r.last && r.last !== r.first ? `${r.first}-${r.last}` : `${r.first}`)).join(',');
  return `${m.direction === Direction.DIRECTION_EGRESS ? 'egress ' : ''}${proto}${ports ? `/${ports}` : ''}${m.tcpSynOnly ? ' syn' : ''}`;
}

function thresholdText(p: DetectionPolicy): string {
  const t = p.threshold!;
  const parts = [t.packetsPerSecond > 0n ? `${t.packetsPerSecond} pkt/s` : '', t.bytesPerSecond > 0n ? `${t.bytesPerSecond} B/s` : ''];
  return `${parts.filter(Boolean).join(' or ')} over ${durText(secs(t.window))}${p.grouping === SourceGrouping.SOURCE_GROUPING_NETWORK ? ' per /24,/64' : ''}`;
}

function policyRow(p: DetectionPolicy): string[] {
  const r = p.response!;
  const scope = Object.entries(SCOPES).find(([, v]) => v === p.scope)?.[0] ?? '?';
  return [
    p.name,
    matchText(p),
    thresholdText(p),
    `${durText(secs(r.duration))} x${r.escalationFactor} <= ${durText(secs(r.maxDuration))}${p.mergeThreshold > 0 ? `, ${p.mergeThreshold}+ per /24,/64 merged` : ''}`,
    scope === 'selector' ? labelsText(p.scopeSelector) : scope,
    p.mode === Mode.MODE_MONITOR ? 'monitor' : 'enforce',
    labelsText(p.nodeSelector),
    `${count(p.detections)}/${count(p.bans)}/${count(p.exempted)}`,
  ];
}

const HEADERS = ['NAME', 'MATCH', 'THRESHOLD', 'BAN', 'SCOPE', 'MODE', 'NODES', 'DETECTED/BANNED/EXEMPTED'];

function banRow(b: Ban): string[] {
  return [
    b.source,
    b.policy,
    b.node,
    relativeTime(b.expireTime),
    String(b.offences),
    `${Math.round(b.packetsPerSecond)} pkt/s`,
    b.ruleId.toString(),
  ];
}

export async function policyCommand(ctx: Context, argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const c = () => ctx.clients();
  const one = (verb: string) => {
    const p = parseArgs(rest, {});
    if (p.positionals.length !== 1) throw new UsageError(`usage: fleetwall policy ${verb} <name>`);
    return p.positionals[0]!;
  };
  switch (sub) {
    case 'create':
      return createPolicy(ctx, rest);
    case 'ls':
    case 'list': {
      const k = c();
      const res = await unary(k, k.policies, k.policies.listPolicies, {});
      if (ctx.out.json) for (const p of res.policies) ctx.out.writeJson(PolicyMsg.toJSON(p));
      else
        ctx.out.write(
          res.policies.length === 0
            ? 'no detection policies: add one with `fleetwall policy create`'
            : table(HEADERS, res.policies.map(policyRow)),
        );
      return;
    }
    case 'get': {
      const name = one('get');
      const k = c();
      const p = (await unary(k, k.policies, k.policies.getPolicy, { name })).policy!;
      if (ctx.out.json) ctx.out.writeJson(PolicyMsg.toJSON(p));
      else ctx.out.write(table(HEADERS, [policyRow(p)]) + (p.comment ? `\ncomment: ${p.comment}` : ''));
      return;
    }
    case 'rm':
    case 'delete': {
      const name = one('rm');
      const k = c();
      await unary(k, k.policies, k.policies.deletePolicy, { name });
      if (ctx.out.json) ctx.out.writeJson({ deleted: name });
      else ctx.out.write(`deleted policy ${name} (its bans stay until they expire)`);
      return;
    }
    default:
      throw new UsageError(sub ? `unknown subcommand "policy ${sub}"\n${USAGE}` : USAGE);
  }
}

async function createPolicy(ctx: Context, argv: string[]): Promise<void> {
  const p = parseArgs(argv, {
    booleans: ['syn', 'egress', 'monitor'],
    values: [
      'pps',
      'bps',
      'window',
      'proto',
      'ports',
      'group',
      'ban',
      'factor',
      'max-ban',
      'jitter',
      'scope',
      'max-bans-per-second',
      'merge-threshold',
      'comment',
    ],
    repeated: ['selector', 'scope-selector'],
  });
  if (p.positionals.length !== 1) throw new UsageError(USAGE);
  const dur = (flag: string) => {
    const v = flagString(p, flag);
    return v === undefined ? undefined : durationFromSeconds(parseDurationSeconds(v, flag));
  };
  const num = (flag: string) => {
    const v = flagString(p, flag);
    if (v === undefined) return 0;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new UsageError(`--${flag} must be a number, got "${v}"`);
    return n;
  };
  const req = CreatePolicyRequest.fromPartial({
    policy: {
      name: p.positionals[0]!,
      match: {
        direction: flagBool(p, 'egress') ? Direction.DIRECTION_EGRESS : Direction.DIRECTION_INGRESS,
        protocol: pick(PROTOS, flagString(p, 'proto'), 'proto', PolicyProtocol.POLICY_PROTOCOL_ANY),
        ports: parsePorts(flagString(p, 'ports')),
        tcpSynOnly: flagBool(p, 'syn'),
      },
      threshold: {
        packetsPerSecond: uint(flagString(p, 'pps'), 'pps'),
        bytesPerSecond: uint(flagString(p, 'bps'), 'bps'),
        window: dur('window'),
      },
      grouping: pick(
        { address: SourceGrouping.SOURCE_GROUPING_ADDRESS, network: SourceGrouping.SOURCE_GROUPING_NETWORK },
        flagString(p, 'group'),
        'group',
        SourceGrouping.SOURCE_GROUPING_ADDRESS,
      ),
      response: {
        duration: dur('ban'),
        escalationFactor: num('factor'),
        maxDuration: dur('max-ban'),
        jitter: flagString(p, 'jitter') === undefined ? 0.1 : num('jitter'),
      },
      scope: pick(SCOPES, flagString(p, 'scope'), 'scope', BanScope.BAN_SCOPE_FLEET),
      scopeSelector: parseLabels(flagList(p, 'scope-selector'), 'scope-selector'),
      mode: flagBool(p, 'monitor') ? Mode.MODE_MONITOR : Mode.MODE_ENFORCE,
      nodeSelector: parseLabels(flagList(p, 'selector'), 'selector'),
      maxBansPerSecond: Number(uint(flagString(p, 'max-bans-per-second'), 'max-bans-per-second')),
      mergeThreshold: Number(uint(flagString(p, 'merge-threshold'), 'merge-threshold')),
      comment: flagString(p, 'comment') ?? '',
    },
  });
  const k = ctx.clients();
  const pol = (await unary(k, k.policies, k.policies.createPolicy, req)).policy!;
  if (ctx.out.json) ctx.out.writeJson(PolicyMsg.toJSON(pol));
  else ctx.out.write(`created policy ${pol.name} (revision ${pol.revision}): ${matchText(pol)}, ${thresholdText(pol)}`);
}

export async function bansCommand(ctx: Context, argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub !== 'ls' && sub !== 'list') throw new UsageError(USAGE);
  const p = parseArgs(rest, { values: ['policy'] });
  const k = ctx.clients();
  const res = await unary(k, k.policies, k.policies.listBans, { policy: flagString(p, 'policy') ?? '' });
  if (ctx.out.json) for (const b of res.bans) ctx.out.writeJson(BanMsg.toJSON(b));
  else
    ctx.out.write(
      res.bans.length === 0
        ? 'no bans in force'
        : table(['SOURCE', 'POLICY', 'NODE', 'EXPIRES', 'OFFENCES', 'RATE', 'RULE'], res.bans.map(banRow)),
    );
}
