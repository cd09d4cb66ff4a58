// gRPC clients for the CLI, promisified, with errors turned into CliError
// (message from the server, ErrorInfo reason, exit code).
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { CounterServiceClient } from '../../proto/gen/fleetwall/v1/counter_service.js';
import { ExplainServiceClient } from '../../proto/gen/fleetwall/v1/explain_service.js';
import { InspectServiceClient } from '../../proto/gen/fleetwall/v1/inspect_service.js';
import { NodeServiceClient } from '../../proto/gen/fleetwall/v1/node_service.js';
import { RuleServiceClient } from '../../proto/gen/fleetwall/v1/rule_service.js';
import { ErrorInfo } from '../../proto/gen/google/rpc/error_details.js';
import { Status } from '../../proto/gen/google/rpc/status.js';
import { CliError, ExitCode } from './errors.js';

export interface Clients {
  readonly target: string;
  /** Metadata for every call: the caller's identity for the audit log. */
  metadata(): Metadata;
  readonly rules: RuleServiceClient;
  readonly nodes: NodeServiceClient;
  readonly counters: CounterServiceClient;
  readonly explain: ExplainServiceClient;
  readonly inspect: InspectServiceClient;
  close(): void;
}

export function connect(target: string, actor = 'cli:unknown'): Clients {
  const creds = credentials.createInsecure();
  const opts = { 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
  const rules = new RuleServiceClient(target, creds, opts);
  const nodes = new NodeServiceClient(target, creds, opts);
  const counters = new CounterServiceClient(target, creds, opts);
  const explain = new ExplainServiceClient(target, creds, opts);
  const inspect = new InspectServiceClient(target, creds, opts);
  return {
    target,
    metadata() {
      const md = new Metadata();
      md.set(ACTOR_METADATA_KEY, actor);
      return md;
    },
    rules,
    nodes,
    counters,
    explain,
    inspect,
    close() {
      for (const c of [rules, nodes, counters, explain, inspect]) c.close();
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
      if (err) reject(toCliError(err, c.target));
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

export function toCliError(err: ServiceError, target: string): CliError {
  const info = errorInfoOf(err);
  const reason = info?.reason;
  switch (err.code) {
    case status.UNAVAILABLE:
      return new CliError(
        `cannot reach the control plane at ${target}: ${err.details}. Is it running? Start one with \`fleetwall control-plane\` or point --server (FLEETWALL_CONTROL_PLANE) at it.`,
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
