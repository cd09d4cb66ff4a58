// The Sync client's channels and their credentials: TLS with the node's
// client certificate when it has one (identity/node-identity.ts), plaintext
// otherwise. A renewed certificate takes a new channel (grpc-js fixes
// credentials at channel creation): CredentialSwitch opens one, and at a safe
// point (in sync, no revision half received) has the client move the stream
// over to it, resuming from the applied revision; the kernel enforces
// throughout.

import { type ChannelCredentials, type ChannelOptions, credentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { AgentSyncClient } from './sync-codec.js';

/** A grpc-js channel, as a client's getChannel() returns it (what channelOverride takes). */
export type GrpcChannel = ReturnType<AgentSyncClient['getChannel']>;

/** TLS credentials (and channel options) for each new channel; unset: plaintext. */
export type ConnectionSource = () => { readonly credentials: ChannelCredentials; readonly options: ChannelOptions };

/** What a channel is made with (SyncClientOptions' fields). */
export interface ChannelSettings {
  readonly connection?: ConnectionSource;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
}

/** A channel to `address` with the current credentials. */
export function openSyncClient(address: string, settings: ChannelSettings): AgentSyncClient {
  const conn = settings.connection?.();
  return new AgentSyncClient(address, conn?.credentials ?? credentials.createInsecure(), {
    'grpc.max_receive_message_length': 256 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.initial_reconnect_backoff_ms': settings.reconnectMinMs,
    'grpc.max_reconnect_backoff_ms': settings.reconnectMaxMs,
    ...conn?.options,
  });
}

/** What the switch needs to know of the client's stream. */
export interface SwitchableStream {
  readonly address: string;
  readonly started: boolean;
  readonly ended: boolean;
  /** A revision arrived in part (Delta.more): not a point to switch streams at. */
  readonly partial: boolean;
  readonly stream: { readonly synced: boolean };
}

/** The Sync client, as the switch sees it. */
export interface SwitchHost<S extends SwitchableStream> {
  /** The current stream, if any. */
  session(): S | undefined;
  stopped(): boolean;
  /** A channel to `address` with the current (renewed) credentials. */
  newClient(address: string): AgentSyncClient;
  /** The new channel is connected: end `s` and open its successor on `next` at once. */
  moveTo(s: S, next: { readonly address: string; readonly client: AgentSyncClient }): void;
}

export class CredentialSwitch<S extends SwitchableStream> {
  /** Renewed credentials wait for a safe point to take over the stream. */
  private pending = false;
  private switching = false;

  constructor(
    private readonly host: SwitchHost<S>,
    /** How long to wait before trying again when the renewed certificate could not connect. */
    private readonly retryMs: number,
    private readonly log: Logger,
  ) {}

  /**
   * New credentials (a renewed certificate): the next channel uses them. A
   * live stream moves over at a safe point: a new channel is connected
   * first; only once its TLS handshake succeeded is the old stream ended and
   * a new one opened on it, resuming from the applied revision.
   */
  request(): void {
    this.pending = true;
    this.trySwitch();
  }

  /** A possible safe point (InSync, a whole revision): switches if one is pending. */
  trySwitch(): void {
    const s = this.host.session();
    if (!this.pending || this.switching || this.host.stopped()) return;
    if (!s || s.ended) {
      this.pending = false; // the next connect uses the new credentials anyway
      return;
    }
    if (!s.started || !s.stream.synced || s.partial) return; // tried again after the next revision
    this.switching = true;
    const next = this.host.newClient(s.address);
    next.waitForReady(Date.now() + 10_000, (err) => {
      this.switching = false;
      if (err || this.host.session() !== s || s.ended || this.host.stopped() || !s.stream.synced || s.partial) {
        next.close();
        if (err) {
          this.log.warn({ err: err.message }, 'the renewed certificate could not connect yet; keeping the current stream');
          setTimeout(() => this.trySwitch(), this.retryMs).unref();
        } else this.trySwitch();
        return;
      }
      this.pending = false;
      this.host.moveTo(s, { address: s.address, client: next });
    });
  }
}
