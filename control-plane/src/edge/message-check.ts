// The generic half of the edge checks: walks a decoded request (ts-proto
// shape) with the proto schema and refuses, naming the field, any value the
// service layer or Postgres could not take: a 64-bit id or revision beyond
// 2^63-1 (Postgres bigint), an unknown enum value, NUL in a string (Postgres
// text), a string or bytes field longer than its limit, a non-finite double,
// an impossible Timestamp or Duration. Grammar (CIDRs, labels, names) is
// checked by each boundary's own module after this walk.
import { echo } from '../../../common/src/echo.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { type FieldSchema, type MessageSchema, type ProtoSchema, protoSchema } from './proto-schema.js';

export const INT8_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

/** Limits of one field ("fleetwall.v1.Rule.comment"); anything not listed gets the defaults. */
export interface FieldLimits {
  /** Most characters of a string (default DEFAULT_MAX_CHARS). */
  readonly maxChars?: number;
  /** Most bytes of a bytes field (default DEFAULT_MAX_BYTES). */
  readonly maxBytes?: number;
  /** A uint64 that may use the whole range (cumulative counters, echoed nonces); others stop at 2^63-1. */
  readonly fullRange?: boolean;
}

export const DEFAULT_MAX_CHARS = 4096;
const DEFAULT_MAX_BYTES = 64 * 1024;
const MAX_MAP_ENTRIES = 1000;
const MAX_MASK_PATH = 128;
/** google.protobuf.Duration's range: +-10,000 years. */
const MAX_DURATION_SECONDS = 315_576_000_000n;
const MIN_TIME_MS = Date.UTC(1, 0, 1) - 1;
const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

const COUNTER = { fullRange: true } as const;
const UNBOUNDED_TEXT = { maxChars: Number.POSITIVE_INFINITY } as const;

/**
 * Field limits that differ from the defaults. Comments are bounded by the
 * configured FLEETWALL_MAX_COMMENT_LENGTH in the service (COMMENT_TOO_LONG).
 */
export const FIELD_LIMITS: Readonly<Record<string, FieldLimits>> = {
  'fleetwall.v1.Rule.comment': UNBOUNDED_TEXT,
  'fleetwall.v1.ImportRulesHeader.comment': UNBOUNDED_TEXT,
  'fleetwall.v1.ManageAddressRequest.comment': UNBOUNDED_TEXT,
  'fleetwall.v1.RuleList.comment': UNBOUNDED_TEXT,
  'fleetwall.v1.Rule.cidr': { maxChars: 128 },
  'fleetwall.v1.Rule.created_by': { maxChars: 256 },
  'fleetwall.v1.ListRulesRequest.covers_address': { maxChars: 128 },
  'fleetwall.v1.ListRulesRequest.text': { maxChars: 256 },
  'fleetwall.v1.ListRulesRequest.page_token': { maxChars: 512 },
  'fleetwall.v1.ListNodesRequest.page_token': { maxChars: 1024 },
  'fleetwall.v1.ExplainRequest.address': { maxChars: 128 },
  'fleetwall.v1.ManageAddressRequest.address': { maxChars: 128 },
  'fleetwall.v1.ImportRulesChunk.lines': { maxChars: 4096 },
  'fleetwall.v1.Hello.agent_version': { maxChars: 128 },
  'fleetwall.v1.Hello.store_id': { maxChars: 128 },
  'fleetwall.v1.Hello.agent_instance_id': { maxChars: 128 },
  'fleetwall.v1.RuleCounterSample.packets': COUNTER,
  'fleetwall.v1.RuleCounterSample.bytes': COUNTER,
  'fleetwall.v1.VerdictCounters.pass_packets': COUNTER,
  'fleetwall.v1.VerdictCounters.pass_bytes': COUNTER,
  'fleetwall.v1.VerdictCounters.drop_packets': COUNTER,
  'fleetwall.v1.VerdictCounters.drop_bytes': COUNTER,
  'fleetwall.v1.VerdictCounters.would_drop_packets': COUNTER,
  'fleetwall.v1.VerdictCounters.would_drop_bytes': COUNTER,
  'fleetwall.v1.CounterReport.seq': COUNTER,
  'fleetwall.v1.Ping.nonce': COUNTER,
  'fleetwall.v1.Pong.nonce': COUNTER,
};

export function invalidField(path: string, problem: string, extra: Record<string, string> = {}): FleetwallError {
  return new FleetwallError('INVALID_FIELD', `${path} ${problem}`, { field: path, ...extra });
}

function join(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}.${name}`;
}

class Walker {
  private readonly fieldLimits = new WeakMap<FieldSchema, FieldLimits>();

  constructor(
    private readonly schema: ProtoSchema,
    private readonly limits: Readonly<Record<string, FieldLimits>>,
  ) {}

  private limitsOf(m: MessageSchema, f: FieldSchema): FieldLimits {
    let lim = this.fieldLimits.get(f);
    if (!lim) {
      lim = this.limits[`${m.fullName}.${f.name}`] ?? {};
      this.fieldLimits.set(f, lim);
    }
    return lim;
  }

  message(type: string, value: unknown, path: string): void {
    if (value === undefined || value === null) return;
    switch (type) {
      case 'google.protobuf.Timestamp':
        this.timestamp(value, path);
        return;
      case 'google.protobuf.Duration':
        this.duration(value, path);
        return;
      case 'google.protobuf.FieldMask':
        this.fieldMask(value, path);
        return;
    }
    const m = this.schema.messages.get(type);
    if (!m) throw new Error(`edge check: unknown message type ${type}`);
    if (typeof value !== 'object') throw invalidField(path || type, 'is not a message');
    const obj = value as Record<string, unknown>;
    for (const f of m.fields) {
      if (f.oneof) continue;
      this.field(m, f, obj[f.prop], join(path, f.name));
    }
    for (const o of m.oneofs) this.oneof(m, o, obj[o], path);
  }

  private oneof(m: MessageSchema, prop: string, v: unknown, path: string): void {
    if (v === undefined || v === null) return;
    const c = (v as { $case?: unknown }).$case;
    const f = m.fields.find((x) => x.oneof === prop && x.prop === c);
    if (!f) throw invalidField(join(path, prop), 'names no known field');
    this.field(m, f, (v as { value?: unknown }).value, join(path, f.name));
  }

  private field(m: MessageSchema, f: FieldSchema, v: unknown, path: string): void {
    if (v === undefined || v === null) return;
    if (f.mapValue) {
      if (typeof v !== 'object') throw invalidField(path, 'is not a map');
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length > MAX_MAP_ENTRIES) throw invalidField(path, `has ${entries.length} entries; at most ${MAX_MAP_ENTRIES}`);
      for (const [k, x] of entries) {
        const at = `${path}[${echo(k, 32)}]`;
        this.text(k, at, 253);
        this.single(m, f.mapValue, x, at);
      }
      return;
    }
    if (f.repeated) {
      if (!Array.isArray(v)) throw invalidField(path, 'is not a list');
      for (let i = 0; i < v.length; i++) this.single(m, f, v[i], `${path}[${i}]`);
      return;
    }
    this.single(m, f, v, path);
  }

  private single(m: MessageSchema, f: FieldSchema, v: unknown, path: string): void {
    const lim = this.limitsOf(m, f);
    switch (f.kind) {
      case 'string':
        if (typeof v !== 'string') throw invalidField(path, 'is not a string');
        this.text(v, path, lim.maxChars ?? DEFAULT_MAX_CHARS);
        return;
      case 'bytes': {
        if (!(v instanceof Uint8Array)) throw invalidField(path, 'is not bytes');
        const max = lim.maxBytes ?? DEFAULT_MAX_BYTES;
        if (v.length > max) throw invalidField(path, `has ${v.length} bytes; at most ${max}`);
        return;
      }
      case 'bool':
        if (typeof v !== 'boolean') throw invalidField(path, 'is not true or false');
        return;
      case 'double':
      case 'float':
        if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidField(path, `must be a finite number, got ${String(v)}`);
        return;
      case 'int32':
      case 'uint32': {
        const lo = f.kind === 'int32' ? -(2 ** 31) : 0;
        const hi = f.kind === 'int32' ? 2 ** 31 - 1 : 2 ** 32 - 1;
        if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi)
          throw invalidField(path, `must be a whole number in ${lo}..${hi}, got ${echo(String(v), 24)}`);
        return;
      }
      case 'int64':
      case 'uint64': {
        if (typeof v !== 'bigint') throw invalidField(path, 'is not a whole number');
        const lo = f.kind === 'int64' ? -INT8_MAX - 1n : 0n;
        const hi = f.kind === 'uint64' && lim.fullRange ? U64_MAX : INT8_MAX;
        if (v < lo || v > hi) throw invalidField(path, `${v} is out of range ${lo}..${hi}`, { value: String(v) });
        return;
      }
      case 'enum': {
        const e = this.schema.enums.get(f.typeName)!;
        if (typeof v !== 'number' || !e.values.has(v)) {
          const names = [...e.values.values()].filter((n) => !n.endsWith('_UNSPECIFIED'));
          throw new FleetwallError(
            'INVALID_ENUM',
            `${path} ${typeof v === 'number' ? v : echo(String(v), 24)} is not a known value; use one of ${names.join(', ')}`,
            {
              field: path,
              value: String(v).slice(0, 24),
            },
          );
        }
        return;
      }
      case 'message':
        this.message(f.typeName, v, path);
        return;
    }
  }

  text(v: string, path: string, max: number): void {
    if (v.length > max) throw invalidField(path, `has ${v.length} characters; at most ${max} are accepted`, { max: String(max) });
    if (v.includes('\u0000')) throw invalidField(path, 'holds a NUL character (U+0000), which no field may hold');
  }

  private timestamp(v: unknown, path: string): void {
    const ms = v instanceof Date ? v.getTime() : Number.NaN;
    if (!(ms >= MIN_TIME_MS && ms <= MAX_TIME_MS)) throw invalidField(path, 'is not a time between the years 1 and 9999');
  }

  private duration(v: unknown, path: string): void {
    const d = v as { seconds?: unknown; nanos?: unknown };
    const s = d.seconds;
    const n = d.nanos;
    if (typeof s !== 'bigint' || typeof n !== 'number' || !Number.isInteger(n))
      throw invalidField(path, 'is not a duration {seconds, nanos}');
    if (
      s > MAX_DURATION_SECONDS ||
      s < -MAX_DURATION_SECONDS ||
      n > 999_999_999 ||
      n < -999_999_999 ||
      (s > 0n && n < 0) ||
      (s < 0n && n > 0)
    )
      throw invalidField(path, 'is out of the Duration range (+-10,000 years, nanos -999,999,999..999,999,999 with the sign of seconds)');
  }

  private fieldMask(v: unknown, path: string): void {
    if (!Array.isArray(v)) throw invalidField(path, 'is not a list of field paths');
    for (let i = 0; i < v.length; i++) {
      if (typeof v[i] !== 'string') throw invalidField(`${path}[${i}]`, 'is not a field path');
      this.text(v[i] as string, `${path}[${i}]`, MAX_MASK_PATH);
    }
  }
}

let walker: Walker | undefined;

/**
 * Checks every field of `value`, a message of type `type` (full proto
 * name), throwing INVALID_FIELD naming the first bad one (`prefix` is put
 * before field names, e.g. "hello").
 */
export function checkMessage(type: string, value: unknown, prefix = ''): void {
  walker ??= new Walker(protoSchema(), FIELD_LIMITS);
  walker.message(type, value, prefix);
}

/** NUL and length check for one string that is not inside a message (an HTTP path or query value). */
export function checkText(value: string, field: string, max = DEFAULT_MAX_CHARS): void {
  walker ??= new Walker(protoSchema(), FIELD_LIMITS);
  walker.text(value, field, max);
}
