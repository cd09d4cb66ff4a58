// The HTTP boundary's half of the edge checks: a JSON request body (or part
// of one) is checked against the proto3 JSON mapping of its message type
// before ts-proto's fromJSON sees it, so a 20-digit id, "abc" where a number
// belongs, an unknown enum name, an array where a message belongs or a
// malformed time is an INVALID_FIELD / INVALID_ENUM naming the field, never
// a BigInt() SyntaxError answered as 500. Unknown fields are ignored (as
// fromJSON does); nesting is bounded by the schema (no message type here is
// recursive) and by readJson's depth limit before parsing.
import { echo } from '../../../common/src/echo.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { FIELD_LIMITS, INT8_MAX, invalidField } from './message-check.js';
import { type FieldSchema, type MessageSchema, protoSchema } from './proto-schema.js';

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const INTEGER = /^-?(0|[1-9]\d{0,19})$/;

function typeOf(v: unknown): string {
  return Array.isArray(v) ? 'a list' : v === null ? 'null' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function join(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}.${name}`;
}

function integer(v: unknown, path: string, lo: bigint, hi: bigint): void {
  let n: bigint | undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v)) n = BigInt(v);
  else if (typeof v === 'string' && INTEGER.test(v.trim())) n = BigInt(v.trim());
  if (n === undefined) throw invalidField(path, `must be a whole number (a JSON number or a decimal string), got ${echo(String(v), 32)}`);
  if (n < lo || n > hi) throw invalidField(path, `${n} is out of range ${lo}..${hi}`, { value: String(n).slice(0, 24) });
}

function single(m: MessageSchema, f: FieldSchema, v: unknown, path: string): void {
  if (v === null) return;
  switch (f.kind) {
    case 'string':
      if (typeof v !== 'string') throw invalidField(path, `must be a string, got ${typeOf(v)}`);
      return;
    case 'bytes':
      if (typeof v !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(v)) throw invalidField(path, 'must be base64 text');
      return;
    case 'bool':
      if (typeof v !== 'boolean') throw invalidField(path, `must be true or false, got ${typeOf(v)}`);
      return;
    case 'double':
    case 'float': {
      const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
      if (!Number.isFinite(n)) throw invalidField(path, `must be a finite number, got ${echo(String(v), 32)}`);
      return;
    }
    case 'int32':
      integer(v, path, -(2n ** 31n), 2n ** 31n - 1n);
      return;
    case 'uint32':
      integer(v, path, 0n, 2n ** 32n - 1n);
      return;
    case 'int64':
      integer(v, path, -INT8_MAX - 1n, INT8_MAX);
      return;
    case 'uint64':
      integer(v, path, 0n, FIELD_LIMITS[`${m.fullName}.${f.name}`]?.fullRange ? 2n ** 64n - 1n : INT8_MAX);
      return;
    case 'enum': {
      const e = protoSchema().enums.get(f.typeName)!;
      const ok =
        (typeof v === 'string' && [...e.values.values()].includes(v)) ||
        (typeof v === 'number' && e.values.has(v)) ||
        (typeof v === 'string' && /^\d{1,9}$/.test(v) && e.values.has(Number(v)));
      if (!ok) {
        const names = [...e.values.values()].filter((n) => !n.endsWith('_UNSPECIFIED'));
        throw new FleetwallError('INVALID_ENUM', `${path} ${echo(String(v), 32)} is not a known value; use one of ${names.join(', ')}`, {
          field: path,
        });
      }
      return;
    }
    case 'message':
      checkJsonShape(f.typeName, v, path);
      return;
  }
}

/**
 * Checks `json` against the proto3 JSON form of message `type`; throws a
 * catalogued error naming the first bad field (`path` prefixes names).
 */
export function checkJsonShape(type: string, json: unknown, path: string): void {
  if (json === null || json === undefined) return;
  switch (type) {
    case 'google.protobuf.Timestamp': {
      const ms = typeof json === 'string' && RFC3339.test(json) ? Date.parse(json) : Number.NaN;
      if (!(ms >= Date.UTC(1, 0, 1) && ms <= Date.UTC(9999, 11, 31, 23, 59, 59, 999)))
        throw invalidField(path, `must be an RFC 3339 time like "2030-01-01T00:00:00Z", got ${echo(String(json), 40)}`);
      return;
    }
    case 'google.protobuf.Duration':
      if (typeof json === 'string') {
        if (!/^-?\d{1,12}(\.\d{1,9})?s$/.test(json.trim()))
          throw invalidField(path, `must be a duration like "3600s", got ${echo(json, 32)}`);
        return;
      }
      break;
    case 'google.protobuf.FieldMask':
      if (typeof json !== 'string') throw invalidField(path, `must be a comma-separated list of field names, got ${typeOf(json)}`);
      return;
  }
  const m = protoSchema().messages.get(type);
  if (!m) throw new Error(`edge check: unknown message type ${type}`);
  if (typeof json !== 'object' || Array.isArray(json)) throw invalidField(path || type, `must be a JSON object, got ${typeOf(json)}`);
  const obj = json as Record<string, unknown>;
  for (const f of m.fields) {
    const v = Object.hasOwn(obj, f.prop) ? obj[f.prop] : Object.hasOwn(obj, f.name) ? obj[f.name] : undefined;
    if (v === undefined || v === null) continue;
    const at = join(path, f.name);
    if (f.mapValue) {
      if (typeof v !== 'object' || Array.isArray(v)) throw invalidField(at, `must be a JSON object of names to values, got ${typeOf(v)}`);
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) single(m, f.mapValue, x, `${at}[${echo(k, 32)}]`);
    } else if (f.repeated) {
      if (!Array.isArray(v)) throw invalidField(at, `must be a list, got ${typeOf(v)}`);
      v.forEach((x, i) => single(m, f, x, `${at}[${i}]`));
    } else single(m, f, v, at);
  }
}
