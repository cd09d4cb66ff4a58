// Requests for the generated part of the hostile suite, from the proto
// schema: random messages (each field absent, ordinary, or at an edge a
// client can reach: NUL, 10 KB strings, u64 2^63 and 2^64-1, unknown enum
// numbers, NaN, far-off times, deep lists) encoded with the generated
// encoders, and real encoded messages mutated byte-wise. Deterministic for a
// seed (test/support/rng.ts).
import { type FieldSchema, protoSchema } from '../../../control-plane/src/edge/proto-schema.js';
import { apiProtoModules } from '../../support/api-proto-modules.js';
import { rng32 } from '../../support/rng.js';

export interface MessageCodec {
  encode(m: unknown): { finish(): Uint8Array };
  fromPartial(m: unknown): unknown;
  toJSON(m: unknown): unknown;
}

// The generated modules of API_PROTO_FILES and the files they import: a new service's messages are generated too.
const MODULES = await apiProtoModules();

/** The generated encoder of a message type ("fleetwall.v1.CreateRuleRequest"), or undefined (map entries, well-known types). */
export function codecOf(fullName: string): MessageCodec | undefined {
  if (!fullName.startsWith('fleetwall.v1.')) return undefined;
  const name = fullName.slice('fleetwall.v1.'.length).replace(/\./g, '_');
  for (const m of MODULES) {
    const c = m[name] as MessageCodec | undefined;
    if (c && typeof c.encode === 'function') return c;
  }
  return undefined;
}

export class Gen {
  private readonly next: () => number;

  constructor(readonly seed: number) {
    this.next = rng32(seed);
  }

  int(n: number): number {
    return this.next() % n;
  }

  chance(p: number): boolean {
    return this.next() / 4294967296 < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  string(): string {
    return this.pick([
      () => '',
      () => 'web',
      () => '192.0.2.1',
      () => '2001:db8::/32',
      () => '::ffff:198.51.100.7',
      () => `a${'\u0000'}b`,
      () => '\u0007\u001b[31m',
      () => 'x'.repeat(10_000),
      () => 'é✓🙂',
      () => '\ud800',
      () => '../../etc/passwd',
      () => String(this.next()),
      () => 'k=v,k2=v2',
      () => ' '.repeat(this.int(5)),
    ])();
  }

  u64(): bigint {
    return this.pick([0n, 1n, 2n, 42n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n, BigInt(this.next()) << BigInt(this.int(33))]);
  }

  int32(): number {
    return this.pick([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), this.int(1000), 99, 1000, 5000]);
  }

  double(): number {
    return this.pick([0, 0.5, -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e308, -0]);
  }

  private scalar(f: FieldSchema, depth: number): unknown {
    switch (f.kind) {
      case 'string':
        return this.string();
      case 'bytes':
        return Buffer.alloc(this.pick([0, 3, 100, 70_000]), this.int(256));
      case 'bool':
        return this.chance(0.5);
      case 'double':
      case 'float':
        return this.double();
      case 'int32':
        return this.int32();
      case 'uint32':
        return this.pick([0, 1, 2 ** 32 - 1, this.int(100)]);
      case 'int64':
        return this.pick([0n, -1n, 1n << 62n, -(1n << 63n)]);
      case 'uint64':
        return this.u64();
      case 'enum': {
        const e = protoSchema().enums.get(f.typeName)!;
        return this.chance(0.8) ? this.pick([...e.values.keys()]) : this.pick([-1, 99, 40_000, 2 ** 31 - 1]);
      }
      case 'message':
        return this.message(f.typeName, depth + 1);
    }
  }

  /** A random message of `type` in ts-proto's shape. */
  message(type: string, depth = 0): unknown {
    switch (type) {
      case 'google.protobuf.Timestamp':
        return new Date(this.pick([0, Date.now() + 3_600_000, Date.now() - 3_600_000, 8.64e15, -8.64e15, 253402300800000]));
      case 'google.protobuf.Duration':
        return {
          seconds: this.pick([0n, 1n, 3600n, -5n, 1n << 40n, 315_576_000_001n]),
          nanos: this.pick([0, 1, -1, 999_999_999, 2_000_000_000]),
        };
      case 'google.protobuf.FieldMask':
        return Array.from({ length: this.int(4) }, () => this.pick(['comment', 'action', 'cidr', '*', 'id', this.string()]));
    }
    if (depth > 4) return undefined;
    const m = protoSchema().messages.get(type);
    if (!m) return undefined;
    const out: Record<string, unknown> = {};
    for (const f of m.fields) {
      if (f.oneof) continue;
      if (this.chance(0.3)) continue;
      if (f.mapValue) {
        const n = this.pick([0, 1, 2, 3, 70]);
        out[f.prop] = Object.fromEntries(
          Array.from({ length: n }, (_, i) => [this.chance(0.8) ? `k${i}` : `${this.string()}${i}`, this.scalar(f.mapValue!, depth)]),
        );
      } else if (f.repeated) {
        out[f.prop] = Array.from({ length: this.pick([0, 1, 2, 3, 40]) }, () => this.scalar(f, depth)).filter((x) => x !== undefined);
      } else {
        out[f.prop] = this.scalar(f, depth);
      }
    }
    for (const o of m.oneofs) {
      if (this.chance(0.15)) continue;
      const f = this.pick(m.fields.filter((x) => x.oneof === o));
      const value = this.scalar(f, depth) ?? {};
      out[o] = { $case: f.prop, value };
    }
    return out;
  }

  /** Encoded bytes of a random message (fromPartial fills what the generator left out). */
  encode(type: string): Buffer {
    const c = codecOf(type)!;
    return Buffer.from(c.encode(c.fromPartial(this.message(type))).finish());
  }

  /** `b` with a few random byte-level changes: flips, overwrites, cuts, insertions, repeats. */
  mutate(b: Buffer): Buffer {
    let x = Buffer.from(b);
    const rounds = 1 + this.int(4);
    for (let r = 0; r < rounds; r++) {
      const at = x.length === 0 ? 0 : this.int(x.length);
      switch (this.int(6)) {
        case 0:
          if (x.length) x[at] = x[at]! ^ (1 << this.int(8));
          break;
        case 1:
          if (x.length) x[at] = this.int(256);
          break;
        case 2:
          x = x.subarray(0, at);
          break;
        case 3:
          x = Buffer.concat([x.subarray(0, at), Buffer.from([this.int(256), this.int(256), this.int(256)]), x.subarray(at)]);
          break;
        case 4:
          x = Buffer.concat([x, x.subarray(at)]);
          break;
        case 5:
          // A huge varint length or value.
          x = Buffer.concat([x.subarray(0, at), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), x.subarray(at)]);
          break;
      }
    }
    return x;
  }
}
