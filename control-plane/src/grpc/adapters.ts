// Thin gRPC adapters over the service layer: caller context from metadata,
// the size-limit marker, errors through the one mapper, a request counter.
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
import { TooLargeMessage, tooLarge } from '../errors/message-too-large.js';

export interface AdapterDeps {
  readonly logger: Logger;
  readonly countRequest: (method: string, code: number) => void;
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

/** Throws MESSAGE_TOO_LARGE for the size marker; returns the message otherwise. */
export function checked<T>(msg: T | TooLargeMessage): T {
  if (msg instanceof TooLargeMessage) throw tooLarge(msg);
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
    const ctx = contextOf(call.metadata, ac.signal);
    run(ctx, async () => fn(checked<Req>(call.request), ctx)).then(
      (res) => {
        deps.countRequest(method, status.OK);
        callback(null, res);
      },
      (err) => {
        const st = toGrpcStatus(err, deps.logger, method);
        deps.countRequest(method, st.code ?? status.UNKNOWN);
        callback(st, null);
      },
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
      for await (const m of call as AsyncIterable<Req | TooLargeMessage>) yield checked(m);
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
    run(ctx, async () => fn(checked<Req>(call.request), emit, ctx)).then(
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
