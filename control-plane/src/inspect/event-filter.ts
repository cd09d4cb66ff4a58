// Event filters (Hubble's allow/deny lists): validated once at the edge,
// compiled into a predicate. Pure. Every bad value is INVALID_FILTER (or the
// CIDR's own reason) with metadata `field` naming it, e.g. allow[0].ports.

import { CidrError, type Prefix, parseCidr } from '../../../common/src/cidr.js';
import { EventVerdict } from '../../../proto/gen/fleetwall/v1/event.js';
import type { EventFilter } from '../../../proto/gen/fleetwall/v1/inspect_service.js';
import { Direction } from '../../../proto/gen/fleetwall/v1/rule.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import type { InspectEvent } from './inspect-event.js';

/** Protocol names a filter takes (or a number 0..255). */
export const PROTOCOLS: Readonly<Record<string, number>> = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, 'ipv6-icmp': 58 };

/** Filters per list at most, values per field at most. */
const MAX_FILTERS = 16;
const MAX_VALUES = 256;

interface Compiled {
  readonly nodes: ReadonlySet<string> | null;
  readonly rules: ReadonlySet<bigint> | null;
  readonly verdicts: ReadonlySet<number> | null;
  readonly directions: ReadonlySet<number> | null;
  readonly src: readonly Prefix[] | null;
  readonly dst: readonly Prefix[] | null;
  readonly protos: ReadonlySet<number> | null;
  readonly ports: ReadonlySet<number> | null;
}

export type EventPredicate = (e: InspectEvent) => boolean;

function bad(field: string, message: string): FleetwallError {
  return new FleetwallError('INVALID_FILTER', `${field}: ${message}`, { field });
}

function list<T>(values: readonly T[], field: string): readonly T[] | null {
  if (values.length > MAX_VALUES) throw bad(field, `at most ${MAX_VALUES} values`);
  return values.length === 0 ? null : values;
}

function cidrs(values: readonly string[], field: string): Prefix[] | null {
  const l = list(values, field);
  if (!l) return null;
  return l.map((v, i) => {
    try {
      return parseCidr(v);
    } catch (e) {
      if (e instanceof CidrError) {
        const meta: Record<string, string> = { field: `${field}[${i}]` };
        if (e.canonical) meta.canonical = e.canonical;
        throw new FleetwallError(e.reason, `${field}[${i}]: ${e.message}`, meta);
      }
      throw e;
    }
  });
}

function protocol(v: string, field: string): number {
  const t = v.trim().toLowerCase();
  if (t in PROTOCOLS) return PROTOCOLS[t]!;
  if (/^\d{1,3}$/.test(t) && Number(t) <= 255) return Number(t);
  throw bad(field, `unknown protocol "${v}": use tcp, udp, icmp, icmpv6 or a number 0..255`);
}

/** Validates one filter (field = its path, e.g. "allow[0]") and compiles it. */
export function compileFilter(f: EventFilter, field: string): Compiled {
  const verdicts = list(f.verdicts, `${field}.verdicts`);
  for (const v of verdicts ?? [])
    if (v !== EventVerdict.EVENT_VERDICT_DROP && v !== EventVerdict.EVENT_VERDICT_WOULD_DROP)
      throw bad(`${field}.verdicts`, `unknown verdict ${v}: use EVENT_VERDICT_DROP or EVENT_VERDICT_WOULD_DROP`);
  const directions = list(f.directions, `${field}.directions`);
  for (const d of directions ?? [])
    if (d !== Direction.DIRECTION_INGRESS && d !== Direction.DIRECTION_EGRESS)
      throw bad(`${field}.directions`, `unknown direction ${d}: use DIRECTION_INGRESS or DIRECTION_EGRESS`);
  const ports = list(f.ports, `${field}.ports`);
  for (const p of ports ?? [])
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw bad(`${field}.ports`, `port ${p} is out of range 1..65535`);
  const nodes = list(f.nodeNames, `${field}.node_names`);
  for (const n of nodes ?? []) if (n.trim() === '') throw bad(`${field}.node_names`, 'an empty node name');
  const protos = list(f.protocols, `${field}.protocols`)?.map((p) => protocol(p, `${field}.protocols`)) ?? null;
  return {
    nodes: nodes ? new Set(nodes) : null,
    rules: list(f.ruleIds, `${field}.rule_ids`) ? new Set(f.ruleIds) : null,
    verdicts: verdicts ? new Set(verdicts) : null,
    directions: directions ? new Set(directions) : null,
    src: cidrs(f.sourceCidrs, `${field}.source_cidrs`),
    dst: cidrs(f.destinationCidrs, `${field}.destination_cidrs`),
    protos: protos ? new Set(protos) : null,
    ports: ports ? new Set(ports) : null,
  };
}

function inAny(ps: readonly Prefix[], addr: Uint8Array): boolean {
  for (const p of ps) {
    if ((p.family === 4 ? 4 : 16) !== addr.length) continue;
    const full = p.len >> 3;
    let ok = true;
    for (let i = 0; i < full && ok; i++) if (p.bytes[i] !== addr[i]) ok = false;
    if (!ok) continue;
    const rem = p.len & 7;
    if (rem === 0) return true;
    const mask = (0xff << (8 - rem)) & 0xff;
    if ((p.bytes[full]! & mask) === (addr[full]! & mask)) return true;
  }
  return false;
}

function matches(c: Compiled, e: InspectEvent): boolean {
  if (c.nodes && !c.nodes.has(e.node)) return false;
  if (c.rules && !c.rules.has(e.ruleId)) return false;
  if (c.verdicts && !c.verdicts.has(e.wire.verdict)) return false;
  if (c.directions && !c.directions.has(e.direction)) return false;
  if (c.protos && !c.protos.has(e.proto)) return false;
  if (c.ports && !(c.ports.has(e.sport) || c.ports.has(e.dport))) return false;
  if (c.src && !inAny(c.src, e.src)) return false;
  if (c.dst && !inAny(c.dst, e.dst)) return false;
  return true;
}

/** Validates allow and deny lists and returns the predicate: one allow matches (or none given) and no deny. */
export function compileFilters(allow: readonly EventFilter[], deny: readonly EventFilter[]): EventPredicate {
  if (allow.length > MAX_FILTERS) throw bad('allow', `at most ${MAX_FILTERS} filters`);
  if (deny.length > MAX_FILTERS) throw bad('deny', `at most ${MAX_FILTERS} filters`);
  const a = allow.map((f, i) => compileFilter(f, `allow[${i}]`));
  const d = deny.map((f, i) => compileFilter(f, `deny[${i}]`));
  return (e) => (a.length === 0 || a.some((c) => matches(c, e))) && !d.some((c) => matches(c, e));
}
