// Pre-encoded Sync messages. Each rule is encoded to AgentRule bytes once
// (kept as a latin1 string: far smaller on the V8 heap than a Uint8Array per
// rule), and snapshot chunks / delta parts are assembled from those bytes
// and encoded once per group of nodes that receive the same thing, then
// written as-is to every stream of the group. The bytes are exactly what
// SyncResponse.encode would produce (test/control-plane/wire-encoding.test.ts).
import { AgentRule } from '../../../proto/gen/fleetwall/v1/agent_service.js';
import { parseCidr } from '../../../common/src/cidr.js';

/** Field tags (field << 3 | wire type). */
const SR_SNAPSHOT_CHUNK = 0x12; // SyncResponse.snapshot_chunk = 2
const SR_IN_SYNC = 0x1a; // SyncResponse.in_sync = 3
const SR_DELTA = 0x22; // SyncResponse.delta = 4
const F1_VARINT = 0x08;
const F2_LEN = 0x12;
const F3_VARINT = 0x18;
const F3_LEN = 0x1a;
const F4_VARINT = 0x20;
const F4_LEN = 0x22;
const F5_VARINT = 0x28;
const TS_SECONDS = 0x08;
const TS_NANOS = 0x10;

class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const b = Buffer.allocUnsafe(size);
    this.buf.copy(b, 0, 0, this.pos);
    this.buf = b;
  }

  byte(b: number): this {
    this.ensure(1);
    this.buf[this.pos++] = b;
    return this;
  }

  varint(n: number): this {
    this.ensure(10);
    while (n > 0x7f) {
      this.buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
    return this;
  }

  varintBig(n: bigint): this {
    if (n <= 0x1fffffffffffffn) return this.varint(Number(n));
    this.ensure(10);
    while (n > 0x7fn) {
      this.buf[this.pos++] = Number(n & 0x7fn) | 0x80;
      n >>= 7n;
    }
    this.buf[this.pos++] = Number(n);
    return this;
  }

  /** A length-delimited field holding latin1-encoded bytes. */
  latin1Field(tag: number, s: string): this {
    this.byte(tag).varint(s.length);
    this.ensure(s.length);
    this.pos += this.buf.write(s, this.pos, 'latin1');
    return this;
  }

  bytesField(tag: number, b: Uint8Array): this {
    this.byte(tag).varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  get length(): number {
    return this.pos;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos) as Buffer;
  }
}

export interface EncodableRule {
  readonly id: bigint;
  readonly cidr: string;
  readonly action: number;
  readonly direction: number;
  readonly mode: number;
  readonly expire_time: Date | null;
}

const scratch = Buffer.allocUnsafe(64);

function putVarint(buf: Buffer, pos: number, n: number): number {
  while (n > 0x7f) {
    buf[pos++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  buf[pos++] = n;
  return pos;
}

function putVarintBig(buf: Buffer, pos: number, n: bigint): number {
  if (n <= 0x1fffffffffffffn) return putVarint(buf, pos, Number(n));
  while (n > 0x7fn) {
    buf[pos++] = Number(n & 0x7fn) | 0x80;
    n >>= 7n;
  }
  buf[pos++] = Number(n);
  return pos;
}

/** "a.b.c.d/n" without the general parser (the common case in big lists). */
function fastV4(cidr: string, out: Buffer, at: number): number {
  let octet = 0;
  let digits = 0;
  let k = 0;
  let i = 0;
  for (; i < cidr.length; i++) {
    const c = cidr.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      octet = octet * 10 + (c - 48);
      digits++;
    } else if (c === 46 && k < 3 && digits > 0 && octet <= 255) {
      out[at + k++] = octet;
      octet = 0;
      digits = 0;
    } else if (c === 47 && k === 3 && digits > 0 && octet <= 255) {
      out[at + k++] = octet;
      break;
    } else return -1;
  }
  if (k !== 4 || i >= cidr.length - 1) return -1;
  let len = 0;
  for (i++; i < cidr.length; i++) {
    const c = cidr.charCodeAt(i);
    if (c < 48 || c > 57) return -1;
    len = len * 10 + (c - 48);
  }
  return len <= 32 ? len : -1;
}

/**
 * AgentRule bytes as a latin1 string (same bytes as AgentRule.encode). `cidr`
 * is the canonical text from the store (already validated).
 */
export function encodeAgentRule(r: EncodableRule): string {
  const b = scratch;
  let pos = 0;
  if (r.id !== 0n) {
    b[pos++] = 0x08;
    pos = putVarintBig(b, pos, r.id);
  }
  // address: tag, length, bytes
  b[pos] = 0x12;
  let len = fastV4(r.cidr, b, pos + 2);
  if (len >= 0) {
    b[pos + 1] = 4;
    pos += 6;
  } else {
    const p = parseCidr(r.cidr);
    b[pos + 1] = p.bytes.length;
    b.set(p.bytes, pos + 2);
    pos += 2 + p.bytes.length;
    len = p.len;
  }
  if (len !== 0) {
    b[pos++] = 0x18;
    pos = putVarint(b, pos, len);
  }
  if (r.action !== 0) {
    b[pos++] = 0x20;
    pos = putVarint(b, pos, r.action);
  }
  if (r.direction !== 0) {
    b[pos++] = 0x28;
    pos = putVarint(b, pos, r.direction);
  }
  if (r.mode !== 0) {
    b[pos++] = 0x30;
    pos = putVarint(b, pos, r.mode);
  }
  if (r.expire_time) {
    const ms = r.expire_time.getTime();
    const seconds = Math.floor(ms / 1000);
    const nanos = (ms - seconds * 1000) * 1_000_000;
    const start = pos;
    pos += 2;
    if (seconds !== 0) {
      b[pos++] = TS_SECONDS;
      pos = putVarint(b, pos, seconds);
    }
    if (nanos !== 0) {
      b[pos++] = TS_NANOS;
      pos = putVarint(b, pos, nanos);
    }
    b[start] = 0x3a;
    b[start + 1] = pos - start - 2;
  }
  return b.toString('latin1', 0, pos);
}

/** The reference encoding (generated code), for tests. */
export function encodeAgentRuleReference(r: EncodableRule): string {
  const p = parseCidr(r.cidr);
  const bytes = AgentRule.encode({
    id: r.id,
    address: Buffer.from(p.bytes),
    prefixLength: p.len,
    action: r.action,
    direction: r.direction,
    mode: r.mode,
    expireTime: r.expire_time ?? undefined,
  }).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

function timestamp(w: Writer, tag: number, d: Date): void {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  const inner = new Writer(16);
  if (seconds !== 0) inner.byte(TS_SECONDS).varint(seconds);
  if (nanos !== 0) inner.byte(TS_NANOS).varint(nanos);
  w.bytesField(tag, inner.finish());
}

function wrap(tag: number, inner: Buffer): Buffer {
  const w = new Writer(inner.length + 8);
  w.bytesField(tag, inner);
  return w.finish();
}

/** SyncResponse{snapshot_chunk} messages for a snapshot of `rules` (encoded). */
export function encodeSnapshot(revision: bigint, rules: Iterable<string>, total: number, chunkBytes: number): Buffer[] {
  const parts: Buffer[] = [];
  let w = new Writer(Math.min(chunkBytes + 64, 1 << 20));
  const begin = () => {
    w = new Writer(Math.min(chunkBytes + 64, 1 << 20));
    if (revision !== 0n) w.byte(F1_VARINT).varintBig(revision);
  };
  const end = (last: boolean) => {
    if (last) w.byte(F3_VARINT).varint(1);
    if (total !== 0) w.byte(F4_VARINT).varint(total);
    parts.push(wrap(SR_SNAPSHOT_CHUNK, w.finish()));
  };
  begin();
  let inChunk = 0;
  for (const enc of rules) {
    if (inChunk > 0 && w.length + enc.length + 6 > chunkBytes) {
      end(false);
      begin();
      inChunk = 0;
    }
    w.latin1Field(F2_LEN, enc);
    inChunk++;
  }
  end(true);
  return parts;
}

/** SyncResponse{in_sync{revision}}. */
export function encodeInSync(revision: bigint): Buffer {
  const w = new Writer(16);
  if (revision !== 0n) w.byte(F1_VARINT).varintBig(revision);
  return wrap(SR_IN_SYNC, w.finish());
}

/**
 * SyncResponse{delta} messages for one revision: one message, or parts of at
 * most ~chunkBytes each with more=true on all but the last.
 */
export function encodeDelta(
  revision: bigint,
  commitTime: Date | undefined,
  upserts: readonly string[],
  deletes: readonly bigint[],
  chunkBytes: number,
): Buffer[] {
  const parts: Buffer[] = [];
  let ui = 0;
  let di = 0;
  do {
    const w = new Writer(256);
    if (revision !== 0n) w.byte(F1_VARINT).varintBig(revision);
    while (ui < upserts.length && (w.length < 16 || w.length + upserts[ui]!.length + 6 <= chunkBytes)) {
      w.latin1Field(F2_LEN, upserts[ui]!);
      ui++;
    }
    if (ui === upserts.length && di < deletes.length) {
      const packed = new Writer(64);
      while (di < deletes.length && (packed.length < 10 || w.length + packed.length + 16 <= chunkBytes)) {
        packed.varintBig(deletes[di]!);
        di++;
      }
      w.bytesField(F3_LEN, packed.finish());
    }
    if (commitTime) timestamp(w, F4_LEN, commitTime);
    const more = ui < upserts.length || di < deletes.length;
    if (more) w.byte(F5_VARINT).varint(1);
    parts.push(wrap(SR_DELTA, w.finish()));
  } while (ui < upserts.length || di < deletes.length);
  return parts;
}
