// The shapes of the API's messages, read once from the .proto files through
// @grpc/proto-loader (the same descriptors server reflection serves): every
// field's kind, repetition, map and oneof, and the enums' values. The edge
// checks (message-check.ts, http/json-shape.ts) walk requests with it, so
// every field of every message is checked, including fields added later.
//
// Field properties are ts-proto's (proto/gen, camelCase): a oneof is one
// property {$case, value} named after the oneof, a map is a Record, a
// FieldMask is string[], a Timestamp is a Date.
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';

export type FieldKind = 'string' | 'bytes' | 'bool' | 'double' | 'float' | 'int32' | 'uint32' | 'int64' | 'uint64' | 'enum' | 'message';

export interface FieldSchema {
  /** Proto name (snake_case), used in messages. */
  readonly name: string;
  /** ts-proto property (lowerCamelCase) and proto3 JSON name. */
  readonly prop: string;
  readonly kind: FieldKind;
  /** Full name of the enum or message type. */
  readonly typeName: string;
  readonly repeated: boolean;
  /** map<string, V>: the value field. */
  readonly mapValue?: FieldSchema;
  /** The oneof property the field belongs to. */
  readonly oneof?: string;
}

export interface MessageSchema {
  readonly fullName: string;
  readonly fields: readonly FieldSchema[];
  readonly oneofs: readonly string[];
}

export interface EnumSchema {
  readonly fullName: string;
  /** number -> name */
  readonly values: ReadonlyMap<number, string>;
}

export interface ProtoSchema {
  readonly messages: ReadonlyMap<string, MessageSchema>;
  readonly enums: ReadonlyMap<string, EnumSchema>;
  /** "RuleService/CreateRule" -> "fleetwall.v1.CreateRuleRequest". */
  readonly requestTypes: ReadonlyMap<string, string>;
}

const PROTO_DIR = fileURLToPath(new URL('../../../proto/', import.meta.url));
export const API_PROTO_FILES = [
  'fleetwall/v1/rule_service.proto',
  'fleetwall/v1/node_service.proto',
  'fleetwall/v1/counter_service.proto',
  'fleetwall/v1/explain_service.proto',
  'fleetwall/v1/agent_service.proto',
  'fleetwall/v1/list_service.proto',
  'fleetwall/v1/token_service.proto',
  'fleetwall/v1/audit_service.proto',
  'fleetwall/v1/enrollment_service.proto',
  'fleetwall/v1/inspect_service.proto',
] as const;

const KINDS: Record<string, FieldKind> = {
  TYPE_STRING: 'string',
  TYPE_BYTES: 'bytes',
  TYPE_BOOL: 'bool',
  TYPE_DOUBLE: 'double',
  TYPE_FLOAT: 'float',
  TYPE_INT32: 'int32',
  TYPE_SINT32: 'int32',
  TYPE_SFIXED32: 'int32',
  TYPE_UINT32: 'uint32',
  TYPE_FIXED32: 'uint32',
  TYPE_INT64: 'int64',
  TYPE_SINT64: 'int64',
  TYPE_SFIXED64: 'int64',
  TYPE_UINT64: 'uint64',
  TYPE_FIXED64: 'uint64',
  TYPE_ENUM: 'enum',
  TYPE_MESSAGE: 'message',
  TYPE_GROUP: 'message',
};

interface FieldDescriptor {
  name: string;
  label: string;
  type: string;
  typeName: string;
}
interface MessageDescriptor {
  name: string;
  field: FieldDescriptor[];
  nestedType: MessageDescriptor[];
  oneofDecl: { name: string }[];
  options: { mapEntry?: boolean } | null;
}

export function camel(snake: string): string {
  return snake.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function packageOf(fullName: string): string {
  return fullName.slice(0, fullName.lastIndexOf('.'));
}

let cached: ProtoSchema | undefined;

/** The schema of fleetwall.v1 (and the types it uses), loaded once. */
export function protoSchema(): ProtoSchema {
  cached ??= load();
  return cached;
}

function load(): ProtoSchema {
  const pkg = protoLoader.loadSync([...API_PROTO_FILES], {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    defaults: false,
    oneofs: true,
  }) as unknown as Record<string, unknown>;
  const messages = new Map<string, MessageSchema>();
  const enums = new Map<string, EnumSchema>();
  const requestTypes = new Map<string, string>();
  const known = new Set(Object.keys(pkg));

  const resolve = (from: string, typeName: string): string => {
    // Proto scoping: the innermost enclosing scope that has the name.
    const name = typeName.replace(/^\./, '');
    for (let scope = from; scope !== ''; scope = packageOf(scope)) {
      if (known.has(`${scope}.${name}`)) return `${scope}.${name}`;
      if (!scope.includes('.')) break;
    }
    if (known.has(name)) return name;
    throw new Error(`proto schema: cannot resolve ${typeName} from ${from}`);
  };

  const field = (owner: string, d: MessageDescriptor, f: FieldDescriptor): FieldSchema => {
    const kind = KINDS[f.type];
    if (!kind) throw new Error(`proto schema: ${owner}.${f.name} has unsupported type ${f.type}`);
    const repeated = f.label === 'LABEL_REPEATED';
    const nested = kind === 'message' ? d.nestedType.find((n) => n.name === f.typeName) : undefined;
    if (nested?.options?.mapEntry) {
      const value = nested.field.find((x) => x.name === 'value')!;
      const key = nested.field.find((x) => x.name === 'key')!;
      if (key.type !== 'TYPE_STRING') throw new Error(`proto schema: ${owner}.${f.name}: only string map keys are used`);
      return {
        name: f.name,
        prop: camel(f.name),
        kind: 'message',
        typeName: `${owner}.${nested.name}`,
        repeated: false,
        mapValue: field(owner, nested, value),
      };
    }
    const typeName = kind === 'message' || kind === 'enum' ? resolve(owner, f.typeName) : '';
    return { name: f.name, prop: camel(f.name), kind, typeName, repeated };
  };

  for (const [name, def] of Object.entries(pkg)) {
    const d = def as { format?: string; type?: unknown };
    if (d.format === 'Protocol Buffer 3 EnumDescriptorProto') {
      const t = d.type as { value: { name: string; number: number }[] };
      enums.set(name, { fullName: name, values: new Map(t.value.map((v) => [v.number, v.name])) });
    } else if (d.format === 'Protocol Buffer 3 DescriptorProto') {
      const t = d.type as MessageDescriptor;
      // proto-loader's descriptors fill oneof_index with 0 for every field and
      // drop proto3_optional, so membership cannot be read from them. A proto3
      // `optional` field x has a synthetic oneof "_x" (not a oneof in ts-proto's
      // shape); a message with a real oneof has all its other fields in that one
      // oneof (true of every message here; a test checks it against the
      // generated code).
      const names = new Set(t.field.map((f) => f.name));
      const optional = new Set(t.oneofDecl.filter((o) => o.name.startsWith('_') && names.has(o.name.slice(1))).map((o) => o.name.slice(1)));
      const real = t.oneofDecl.filter((o) => !(o.name.startsWith('_') && optional.has(o.name.slice(1))));
      if (real.length > 1) throw new Error(`proto schema: ${name} has more than one oneof`);
      const oneof = real[0] ? camel(real[0].name) : undefined;
      messages.set(name, {
        fullName: name,
        fields: t.field.map((f) => ({ ...field(name, t, f), ...(oneof && !optional.has(f.name) ? { oneof } : {}) })),
        oneofs: oneof ? [oneof] : [],
      });
    } else if (typeof def === 'object' && def !== null) {
      // A service: method name -> { path, requestType, ... }.
      for (const [method, m] of Object.entries(def as Record<string, { path?: string; requestType?: { type: { name: string } } }>)) {
        if (!m?.path || !m.requestType) continue;
        const service = name.slice(name.lastIndexOf('.') + 1);
        requestTypes.set(`${service}/${method}`, `${packageOf(name)}.${m.requestType.type.name}`);
      }
    }
  }
  return { messages, enums, requestTypes };
}
