// A raw HTTP/2 client over TCP that writes frames as given and records the
// server's, for a hostile client that ignores what the server advertised
// (node:http2 and grpc-js keep to the peer's SETTINGS, so they cannot).
// HEADERS carry literal header fields without indexing (RFC 7541 6.2.2),
// names and values under 127 bytes.
import { connect, type Socket } from 'node:net';

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7 } as const;
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export interface ReceivedFrame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

export interface RawHttp2 {
  /** Every frame received so far, in order. */
  readonly frames: ReceivedFrame[];
  readonly closed: Promise<void>;
  /** Opens a request stream (HEADERS without END_STREAM). */
  headers(streamId: number, fields: Record<string, string>): void;
  /** One DATA frame; `end` sets END_STREAM. */
  data(streamId: number, payload: Buffer, end: boolean): void;
  /** Resolves with the first received frame matching `pred` (already received or to come), or rejects if the socket closes first. */
  frame(pred: (f: ReceivedFrame) => boolean): Promise<ReceivedFrame>;
  destroy(): void;
}

function frameBytes(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

function literal(name: string, value: string): Buffer {
  if (name.length > 126 || value.length > 126) throw new Error('raw-http2: header field too long for this encoder');
  return Buffer.concat([Buffer.from([0, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
}

/**
 * Connects, sends the preface and an empty SETTINGS, acknowledges the
 * server's SETTINGS and resolves once the server has acknowledged ours: from
 * then on the server applies its advertised limits as acknowledged.
 */
export async function rawHttp2(host: string, port: number): Promise<RawHttp2> {
  const sock: Socket = connect(port, host);
  sock.on('error', () => undefined);
  const frames: ReceivedFrame[] = [];
  const waiters: { pred: (f: ReceivedFrame) => boolean; resolve(f: ReceivedFrame): void; reject(e: Error): void }[] = [];
  let buf = Buffer.alloc(0);
  const closed = new Promise<void>((resolve) =>
    sock.on('close', () => {
      for (const w of waiters.splice(0)) w.reject(new Error('raw-http2: the connection closed before the frame came'));
      resolve();
    }),
  );
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3);
      if (buf.length < 9 + len) break;
      const f = {
        type: buf[3]!,
        flags: buf[4]!,
        streamId: buf.readUInt32BE(5) & 0x7fffffff,
        payload: Buffer.from(buf.subarray(9, 9 + len)),
      };
      buf = buf.subarray(9 + len);
      frames.push(f);
      if (f.type === FRAME.SETTINGS && !(f.flags & FLAG_ACK)) sock.write(frameBytes(FRAME.SETTINGS, FLAG_ACK, 0, Buffer.alloc(0)));
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(f)) waiters.splice(i, 1)[0]!.resolve(f);
      }
    }
  });
  const client: RawHttp2 = {
    frames,
    closed,
    headers(streamId, fields) {
      const block = Buffer.concat([
        Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table)
        ...Object.entries(fields).map(([k, v]) => literal(k, v)),
      ]);
      sock.write(frameBytes(FRAME.HEADERS, FLAG_END_HEADERS, streamId, block));
    },
    data(streamId, payload, end) {
      sock.write(frameBytes(FRAME.DATA, end ? FLAG_END_STREAM : 0, streamId, payload));
    },
    frame(pred) {
      const seen = frames.find(pred);
      if (seen) return Promise.resolve(seen);
      if (sock.destroyed) return Promise.reject(new Error('raw-http2: the connection is closed'));
      return new Promise((resolve, reject) => waiters.push({ pred, resolve, reject }));
    },
    destroy() {
      sock.destroy();
    },
  };
  sock.write(Buffer.concat([PREFACE, frameBytes(FRAME.SETTINGS, 0, 0, Buffer.alloc(0))]));
  // Ours acknowledged, and theirs received (so our acknowledgement of theirs is written before anything sent next).
  await client.frame((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG_ACK) !== 0);
  await client.frame((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG_ACK) === 0);
  return client;
}
