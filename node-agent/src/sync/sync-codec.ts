// The Sync stream's response decoder. Snapshot chunks and deltas carry up to
// millions of AgentRules; decoding each into an object (bigint id, Buffer,
// Date) costs more than storing it. Here they stay as byte ranges of the
// received message (RawRules) and raw-rules.ts writes them straight into the
// rule table. Every other message is decoded by the generated code.
//
// The bytes are protobuf as defined in proto/fleetwall/v1/agent_service.proto;
// unknown fields are skipped, so a newer control plane stays readable.

import {
  makeGenericClientConstructor,
  type ChannelCredentials,
  type Client,
  type ClientDuplexStream,
  type ClientOptions,
} from '@grpc/grpc-js';
import { AgentServiceService, type SyncRequest, SyncResponse } from '../../../proto/gen/fleetwall/v1/agent_service.js';

/** AgentRule messages as [start, end) ranges of `buf`. */
export interface RawRules {
  readonly buf: Uint8Array;
  readonly ranges: Int32Array;
  readonly count: number;
}

export interface RawSnapshotChunk {
  readonly revision: bigint;
  readonly rules: RawRules;
  readonly last: boolean;
  readonly totalRules: bigint;
}

export interface RawDelta {
  readonly revision: bigint;
  readonly upserts: RawRules;
  readonly deletes: bigint[];
  readonly commitTime: Date | undefined;
  readonly more: boolean;
}

type Decoded = NonNullable<SyncResponse['msg']>;
export type AgentSyncMessage =
  | Exclude<Decoded, { $case: 'snapshotChunk' } | { $case: 'delta' }>
  | { $case: 'snapshotChunk'; value: RawSnapshotChunk }
  | { $case: 'delta'; value: RawDelta };

export interface AgentSyncResponse {
  readonly msg: AgentSyncMessage | undefined;
}

export class WireError extends Error {
  override readonly name = 'WireError';
}

/** A minimal protobuf reader over one buffer. */
export class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint as a number (exact up to 2^53; larger values lose precision, see varintBig). */
  varint(): number {
    const b = this.buf;
    let x = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireError('truncated varint');
      const c = b[this.pos++]!;
      x += (c & 0x7f) * mul;
      if (c < 0x80) return x;
      mul *= 128;
    }
    throw new WireError('varint longer than 10 bytes');
  }

  /** A u64 varint, exact. */
  varintBig(): bigint {
    const start = this.pos;
    const n = this.varint();
    if (n <= Number.MAX_SAFE_INTEGER) return BigInt(n);
    let x = 0n;
    let shift = 0n;
    for (let p = start; p < this.pos; p++) {
      x |= BigInt(this.buf[p]! & 0x7f) << shift;
      shift += 7n;
    }
    return BigInt.asUintN(64, x);
  }

  /** Start of a length-delimited field's payload; advances past it. */
  lengthDelimited(): [number, number] {
    const len = this.varint();
    const s = this.pos;
    if (s + len > this.end) throw new WireError('truncated length-delimited field');
    this.pos = s + len;
    return [s, s + len];
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.lengthDelimited();
        return;
      case 5:
        this.pos += 4;
        break;
      default:
        throw new WireError(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new WireError('truncated field');
  }
}

class RangeList {
  a = new Int32Array(64);
  n = 0;
  push(s: number, e: number): void {
    if (this.n + 2 > this.a.length) {
      const b = new Int32Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = s;
    this.a[this.n++] = e;
  }
}

function timestampMs(r: Reader, s: number, e: number): number {
  const t = new Reader(r.buf, s, e);
  let seconds = 0;
  let nanos = 0;
  while (!t.done) {
    const tag = t.varint();
    if (tag === 0x08) seconds = t.varint();
    else if (tag === 0x10) nanos = t.varint();
    else t.skip(tag & 7);
  }
  return seconds * 1000 + Math.floor(nanos / 1e6);
}

function decodeChunk(buf: Uint8Array, s: number, e: number): RawSnapshotChunk {
  const r = new Reader(buf, s, e);
  let revision = 0n;
  let last = false;
  let totalRules = 0n;
  const rules = new RangeList();
  while (!r.done) {
    const tag = r.varint();
    switch (tag) {
      case 0x08:
        revision = r.varintBig();
        break;
      case 0x12: {
        const [a, b] = r.lengthDelimited();
        rules.push(a, b);
        break;
      }
      case 0x18:
        last = r.varint() !== 0;
        break;
      case 0x20:
        totalRules = r.varintBig();
        break;
      default:
        r.skip(tag & 7);
    }
  }
  return { revision, rules: { buf, ranges: rules.a, count: rules.n / 2 }, last, totalRules };
}

function decodeDelta(buf: Uint8Array, s: number, e: number): RawDelta {
  const r = new Reader(buf, s, e);
  let revision = 0n;
  let more = false;
  let commitTime: Date | undefined;
  const upserts = new RangeList();
  const deletes: bigint[] = [];
  while (!r.done) {
    const tag = r.varint();
    switch (tag) {
      case 0x08:
        revision = r.varintBig();
        break;
      case 0x12: {
        const [a, b] = r.lengthDelimited();
        upserts.push(a, b);
        break;
      }
      case 0x18: // unpacked uint64
        deletes.push(r.varintBig());
        break;
      case 0x1a: {
        // packed uint64
        const [a, b] = r.lengthDelimited();
        const p = new Reader(buf, a, b);
        while (!p.done) deletes.push(p.varintBig());
        break;
      }
      case 0x22: {
        const [a, b] = r.lengthDelimited();
        commitTime = new Date(timestampMs(r, a, b));
        break;
      }
      case 0x28:
        more = r.varint() !== 0;
        break;
      default:
        r.skip(tag & 7);
    }
  }
  return { revision, upserts: { buf, ranges: upserts.a, count: upserts.n / 2 }, deletes, commitTime, more };
}

/** SyncResponse bytes -> message; rules of snapshot chunks and deltas stay raw. */
export function decodeSyncResponse(buf: Buffer): AgentSyncResponse {
  const r = new Reader(buf, 0, buf.length);
  let msg: AgentSyncMessage | undefined;
  while (!r.done) {
    const tag = r.varint();
    if (tag === 0x12) {
      const [a, b] = r.lengthDelimited();
      msg = { $case: 'snapshotChunk', value: decodeChunk(buf, a, b) };
    } else if (tag === 0x22) {
      const [a, b] = r.lengthDelimited();
      msg = { $case: 'delta', value: decodeDelta(buf, a, b) };
    } else {
      // Anything else: the generated decoder (small messages).
      const m = SyncResponse.decode(buf).msg;
      return { msg: m as AgentSyncMessage | undefined };
    }
  }
  return { msg };
}

export const AgentSyncService = {
  sync: { ...AgentServiceService.sync, responseDeserialize: decodeSyncResponse },
} as const;

export interface AgentSyncClient extends Client {
  sync(): ClientDuplexStream<SyncRequest, AgentSyncResponse>;
}

export const AgentSyncClient = makeGenericClientConstructor(AgentSyncService, 'fleetwall.v1.AgentService') as unknown as {
  new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>): AgentSyncClient;
};
