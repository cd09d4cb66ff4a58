// gRPC clients for the CLI, promisified, with errors turned into CliError
// (message from the server, ErrorInfo reason, exit code).
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { CounterServiceClient } from '../../proto/gen/fleetwall/v1/counter_service.js';
import { ExplainServiceClient } from '../../proto/gen/fleetwall/v1/explain_service.js';
import { ListServiceClient } from '../../proto/gen/fleetwall/v1/list_service.js';
import { InspectServiceClient } from '../../proto/gen/fleetwall/v1/inspect_service.js';
import { NodeServiceClient } from '../../proto/gen/fleetwall/v1/node_service.js';
import { RuleServiceClient } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { AuditServiceClient } from '../../proto/gen/fleetwall/v1/audit_service.js';
import { TokenServiceClient } from '../../proto/gen/fleetwall/v1/token_service.js';
import { EnrollmentServiceClient } from '../../proto/gen/fleetwall/v1/enrollment_service.js';
import { ErrorInfo } from '../../proto/gen/google/rpc/error_details.js';
import { Status } from '../../proto/gen/google/rpc/status.js';
import { CliError, ExitCode } from './errors.js';

export interface Clients {
  readonly target: string;
  /** Where the API token came from (undefined: none sent). */
  readonly tokenSource: string | undefined;
  /** Metadata for every call: the caller's identity for the audit log. */
  metadata(): Metadata;
  readonly rules: RuleServiceClient;
  readonly nodes: NodeServiceClient;
  readonly counters: CounterServiceClient;
  readonly explain: ExplainServiceClient;
  readonly tokens: TokenServiceClient;
  readonly audit: AuditServiceClient;
  readonly enrollment: EnrollmentServiceClient;
  readonly lists: ListServiceClient;
  readonly inspect: InspectServiceClient;
  close(): void;
}

export interface ConnectOptions {
  /** API token, sent as `authorization: Bearer <token>` on every call. */
  readonly token?: string | undefined;
  /** Where it came from, for the hint on UNAUTHENTICATED. */
  readonly tokenSource?: string | undefined;
  /** TLS with this CA bundle (undefined ca: the system's); undefined: plaintext. */
  readonly tls?: { readonly ca: Buffer | undefined } | undefined;
}

export function connect(target: string, actor = 'cli:unknown', o: ConnectOptions = {}): Clients {
  const creds = o.tls ? credentials.createSsl(o.tls.ca ?? null) : credentials.createInsecure();
  const opts = { 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
  // One channel for every service: one connection, one TLS handshake per command.
  const rules = new RuleServiceClient(target, creds, opts);
  const channelOverride = rules.getChannel();
  const shared = { ...opts, channelOverride };
  const nodes = new NodeServiceClient(target, creds, shared);
  const counters = new CounterServiceClient(target, creds, shared);
  const explain = new ExplainServiceClient(target, creds, shared);
  const tokens = new TokenServiceClient(target, creds, shared);
  const audit = new AuditServiceClient(target, creds, shared);
  const enrollment = new EnrollmentServiceClient(target, creds, shared);
  const lists = new ListServiceClient(target, creds, shared);
  const inspect = new InspectServiceClient(target, creds, shared);
  return {
    target,
    tokenSource: o.tokenSource,
    metadata() {
      const md = new Metadata();
      md.set(ACTOR_METADATA_KEY, actor);
      if (o.token) md.set('authorization', `Bearer ${o.token}`);
      return md;
    },
    rules,
    nodes,
    counters,
    explain,
    tokens,
    audit,
    enrollment,
    lists,
    inspect,
    close() {
      for (const c of [nodes, counters, explain, tokens, audit, enrollment, lists, inspect, rules]) c.close();
    },
  };
}

/** The metadata key the control plane reads the caller's identity from. */
export const ACTOR_METADATA_KEY = 'x-fleetwall-actor';

type UnaryFn<Req, Res> = (req: Req, md: Metadata, opts: { deadline: Date }, cb: (err: ServiceError | null, res: Res) => void) => unknown;

/** Calls a unary method of one of `c`'s clients with a deadline; rejects with CliError. */
export function unary<Req, Res>(c: Clients, client: object, fn: UnaryFn<Req, Res>, req: Req, timeoutMs = 15_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn.call(client, req, c.metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => {
      if (err) reject(toCliError(err, c.target, c.tokenSource));
      else resolve(res);
    });
  });
}

/** The google.rpc.ErrorInfo in a status's details, if the server sent one. */
export function errorInfoOf(err: ServiceError): ErrorInfo | undefined {
  const raw = err.metadata?.get('grpc-status-details-bin')?.[0];
  if (!raw || typeof raw === 'string') return undefined;
  try {
    const st = Status.decode(raw);
    for (const any of st.details) {
      if (any.typeUrl.endsWith('/google.rpc.ErrorInfo')) return ErrorInfo.decode(any.value);
    }
  } catch {
    // A malformed trailer must not hide the real error.
  }
  return undefined;
}

function tokenHint(source: string | undefined): string {
  return source === undefined
    ? " (no token was sent: pass --token or FLEETWALL_TOKEN; on the control plane's host the CLI reads <data-dir>/admin.token when it may)"
    : ` (the token came from ${source})`;
}

export function toCliError(err: ServiceError, target: string, tokenSource?: string): CliError {
  const info = errorInfoOf(err);
  const reason = info?.reason;
  switch (err.code) {
    case status.UNAUTHENTICATED:
      return new CliError(`${err.details}${tokenHint(tokenSource)}`, ExitCode.Denied, reason ?? 'UNAUTHENTICATED');
    case status.PERMISSION_DENIED:
      return new CliError(err.details, ExitCode.Denied, reason ?? 'PERMISSION_DENIED');
    case status.UNAVAILABLE:
      return new CliError(
        `cannot reach the control plane at ${target}: ${err.details}. Is it running? Start one with \`fleetwall control-plane\` or point --server (FLEETWALL_CONTROL_PLANE) at it; if it speaks TLS, give its CA with --ca-cert (FLEETWALL_CA_CERT).`,
        ExitCode.Unavailable,
        'UNAVAILABLE',
      );
    case status.DEADLINE_EXCEEDED:
      return new CliError(
        `the control plane at ${target} did not answer in time: ${err.details}`,
        ExitCode.Unavailable,
        'DEADLINE_EXCEEDED',
      );
    case status.NOT_FOUND:
      return new CliError(err.details, ExitCode.NotFound, reason ?? 'NOT_FOUND');
    case status.INVALID_ARGUMENT:
    case status.ALREADY_EXISTS:
    case status.FAILED_PRECONDITION:
    case status.OUT_OF_RANGE:
    case status.RESOURCE_EXHAUSTED:
      return new CliError(err.details, ExitCode.Rejected, reason ?? status[err.code]);
    default:
      return new CliError(`${status[err.code] ?? err.code}: ${err.details}`, ExitCode.Failure, reason ?? String(status[err.code]));
  }
}
