// Thin gRPC adapters over the service layer: caller context from metadata,
// the size-limit marker, every request checked at the edge (edge/api-input.ts:
// range, enum, NUL, size of every field) before its handler runs, a server-side
// deadline on unary calls, errors through the one mapper, a request counter.
import type {
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  Metadata,
  ServerReadableStream,
  ServerWritableStream,
} from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { toGrpcStatus } from '../errors/to-grpc-status.js';
import { principalOfMetadata } from '../auth/grpc-auth.js';
import { ACTOR_METADATA_KEY, type CallContext, callContextOf } from '../services/call-context.js';
import { withAuditNote } from '../store/audit-note.js';
import { isRefused, type RefusedMessage, refusal } from '../errors/refused-message.js';
import { FleetwallError } from '../errors/fleetwall-error.js';
import { checkApiRequest } from '../edge/api-input.js';

export interface AdapterDeps {
  readonly logger: Logger;
  readonly countRequest: (method: string, code: number) => void;
  /** Server-side deadline of a unary call (FLEETWALL_CALL_TIMEOUT); none when unset. */
  readonly callTimeoutMs?: number;
  /** Unary methods ("ListService/RefreshList") bounded by their own settings instead (a list's fetch timeout). */
  readonly untimedMethods?: ReadonlySet<string>;
}

function deadlineExceeded(ms: number): FleetwallError {
  return new FleetwallError(
    'DEADLINE_EXCEEDED',
    `the call did not finish within ${ms}ms (FLEETWALL_CALL_TIMEOUT); if it was a write, read the rule back before retrying`,
    { timeout_ms: String(ms) },
  );
}

/** The caller: the principal the auth interceptor established (auth/grpc-auth.ts), the x-fleetwall-actor note. */
export function contextOf(metadata: Metadata, signal?: AbortSignal): CallContext {
  const raw = metadata.get(ACTOR_METADATA_KEY)[0];
  return callContextOf(principalOfMetadata(metadata), typeof raw === 'string' ? raw : undefined, signal);
}

/** Runs a handler with its call's audit note in scope (store/audit-note.ts). */
function run<T>(ctx: CallContext, fn: () => Promise<T>): Promise<T> {
  return withAuditNote(ctx.note ?? '', fn);
}

/** Throws MESSAGE_TOO_LARGE / MALFORMED_MESSAGE for the deserializer's markers; returns the message otherwise. */
export function checked<T>(msg: T | RefusedMessage): T {
  if (isRefused(msg)) throw refusal(msg);
  return msg;
}

export function unary<Req, Res>(
  deps: AdapterDeps,
  method: string,
  fn: (req: Req, ctx: CallContext) => Promise<Res>,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    let answered = false;
    let timer: NodeJS.Timeout | undefined;
    const answer = (err: unknown, res?: Res) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      if (err === undefined) {
        deps.countRequest(method, status.OK);
        callback(null, res!);
        return;
      }
      const st = toGrpcStatus(err, deps.logger, method);
      deps.countRequest(method, st.code ?? status.UNKNOWN);
      callback(st, null);
    };
    const ms = deps.untimedMethods?.has(method) ? undefined : deps.callTimeoutMs;
    if (ms) {
      timer = setTimeout(() => {
        ac.abort(deadlineExceeded(ms));
        answer(deadlineExceeded(ms));
      }, ms);
    }
    const ctx = contextOf(call.metadata, ac.signal);
    run(ctx, async () => fn(checkApiRequest(method, checked<Req>(call.request)), ctx)).then(
      (res) => answer(undefined, res),
      (err) => answer(err ?? new Error('handler failed without an error')),
    );
  };
}

export function clientStream<Req, Res>(
  deps: AdapterDeps,
  method: string,
  fn: (messages: AsyncIterable<Req>, ctx: CallContext) => Promise<Res>,
): handleClientStreamingCall<Req, Res> {
  return (call: ServerReadableStream<Req, Res>, callback) => {
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    async function* messages(): AsyncGenerator<Req> {
      for await (const m of call as AsyncIterable<Req | RefusedMessage>) yield checkApiRequest(method, checked(m));
    }
    const ctx = contextOf(call.metadata, ac.signal);
    run(ctx, () => fn(messages(), ctx)).then(
      (res) => {
        deps.countRequest(method, status.OK);
        callback(null, res);
      },
      (err) => {
        if (ac.signal.aborted) return;
        const st = toGrpcStatus(err, deps.logger, method);
        deps.countRequest(method, st.code ?? status.UNKNOWN);
        callback(st, null);
      },
    );
  };
}

export function serverStream<Req, Res>(
  deps: AdapterDeps,
  method: string,
  fn: (req: Req, emit: (res: Res) => Promise<void>, ctx: CallContext & { signal: AbortSignal }) => Promise<void>,
): handleServerStreamingCall<Req, Res> {
  return (call: ServerWritableStream<Req, Res>) => {
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    call.on('close', () => ac.abort());
    const emit = (res: Res) =>
      new Promise<void>((resolve) => {
        if (ac.signal.aborted) return resolve();
        if (call.write(res)) resolve();
        else call.once('drain', () => resolve());
      });
    const ctx = { ...contextOf(call.metadata, ac.signal), signal: ac.signal };
    run(ctx, async () => fn(checkApiRequest(method, checked<Req>(call.request)), emit, ctx)).then(
      () => {
        deps.countRequest(method, status.OK);
        if (!ac.signal.aborted) call.end();
      },
      (err) => {
        const st = toGrpcStatus(err, deps.logger, method);
        deps.countRequest(method, st.code ?? status.UNKNOWN);
        if (!ac.signal.aborted) call.emit('error', st);
      },
    );
  };
}
