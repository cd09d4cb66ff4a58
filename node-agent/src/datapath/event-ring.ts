// The fw_events ring buffer read from this process: its pages mapped (the
// consumer position read-write, the producer position and the data pages
// read-only, the data mapped twice in a row by the kernel so a record that
// wraps is contiguous), records walked in place and handed to a sink
// (zero-copy: the sink copies what it keeps before it returns), then the
// consumer position stored. Waiting is poll(2) on the map's fd run on a
// libuv worker thread (koffi's .async): no busy loop, no thread per CPU, the
// event loop never blocks. Layouts: uapi.ts (bpf_ringbuf, the record header
// bits), checked against the kernel by test/dataplane/abi.test.ts.

import koffi from 'koffi';
import { constants as osConstants } from 'node:os';
import { DatapathError } from './errors.js';
import { raw } from './libbpf.js';
import {
  BPF_RINGBUF_BUSY_BIT,
  BPF_RINGBUF_DISCARD_BIT,
  BPF_RINGBUF_HDR_SZ,
  KERNEL_LAYOUT,
  MAP_SHARED,
  PAGE_SIZE,
  POLLFD_EVENTS,
  POLLFD_REVENTS,
  POLLFD_SIZE,
  POLLIN,
  PROT_READ,
  PROT_WRITE,
} from './uapi.js';

const E = osConstants.errno;
const MAP_FAILED = 2n ** 64n - 1n;
const RB = KERNEL_LAYOUT.bpf_ringbuf.fields;
/** The producer page's offset in the mmap of the map (the consumer page is at 0). */
const PRODUCER_OFF = RB.producer_pos - RB.consumer_pos;
/** The data's offset in the second mapping (which starts at the producer page). */
const DATA_OFF = PAGE_SIZE;

/** Receives one record: `buf[off .. off + len)`, valid only until the sink returns. */
export type EventRecordSink = (buf: Buffer, off: number, len: number) => void;

/** poll(2) on a libuv worker thread (koffi's asynchronous call). */
const pollAsync = (raw.poll as unknown as { async: (...args: unknown[]) => void }).async.bind(raw.poll);

function mapped(p: unknown): boolean {
  return !(p === null || (typeof p === 'bigint' && p === MAP_FAILED) || koffi.address(p as never) === MAP_FAILED);
}

export class EventRing {
  /** Bytes of data (a power of two). */
  readonly size: number;
  private readonly consPtr: unknown;
  private readonly dataPtr: unknown;
  private readonly dataLen: number;
  private readonly cons: BigUint64Array;
  private readonly prod: BigUint64Array;
  private readonly words: Int32Array;
  private readonly data: Buffer;
  private readonly pollfd = Buffer.alloc(POLLFD_SIZE);
  private waiting: Promise<boolean> | null = null;
  private closed = false;
  /** Records read and bytes consumed since open. */
  readonly stats = { records: 0, bytes: 0, discarded: 0, waits: 0 };

  constructor(
    fd: number,
    size: number,
    private readonly name = 'fw_events',
  ) {
    if (size < PAGE_SIZE || (size & (size - 1)) !== 0)
      throw new DatapathError('map ring', name, E.EINVAL, `size ${size} is not a power of two of at least a page`);
    this.size = size;
    this.consPtr = raw.mmap(null, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
    if (!mapped(this.consPtr)) throw new DatapathError('mmap ring consumer page', name, koffi.errno() || E.EINVAL);
    this.dataLen = PAGE_SIZE + 2 * size;
    this.dataPtr = raw.mmap(null, this.dataLen, PROT_READ, MAP_SHARED, fd, BigInt(PRODUCER_OFF));
    if (!mapped(this.dataPtr)) {
      const errno = koffi.errno() || E.EINVAL;
      raw.munmap(this.consPtr, PAGE_SIZE);
      throw new DatapathError('mmap ring data', name, errno);
    }
    const consBuf = koffi.view(this.consPtr as never, PAGE_SIZE) as ArrayBuffer;
    const dataBuf = koffi.view(this.dataPtr as never, this.dataLen) as ArrayBuffer;
    this.cons = new BigUint64Array(consBuf, 0, 1);
    this.prod = new BigUint64Array(dataBuf, 0, 1);
    this.words = new Int32Array(dataBuf, DATA_OFF, (2 * size) / 4);
    this.data = Buffer.from(dataBuf, DATA_OFF, 2 * size);
    this.pollfd.writeInt32LE(fd, 0);
    this.pollfd.writeInt16LE(POLLIN, POLLFD_EVENTS);
  }

  /** Bytes written by the programs and not read yet. */
  get pendingBytes(): number {
    return Number(Atomics.load(this.prod, 0) - Atomics.load(this.cons, 0));
  }

  /**
   * Hands every complete record (up to `max`) to the sink in order, then
   * frees their space (one store of the consumer position). Returns the
   * records read. A record still being written (BUSY) ends the walk.
   */
  drain(sink: EventRecordSink, max = Number.POSITIVE_INFINITY): number {
    this.assertOpen();
    let cons = Atomics.load(this.cons, 0);
    const prod = Atomics.load(this.prod, 0);
    const mask = BigInt(this.size - 1);
    let n = 0;
    let bytes = 0;
    while (cons < prod && n < max) {
      const off = Number(cons & mask);
      const hdr = Atomics.load(this.words, off >> 2) >>> 0;
      if (hdr & BPF_RINGBUF_BUSY_BIT) break;
      const len = hdr & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) & 0xffffffff;
      const total = (len + BPF_RINGBUF_HDR_SZ + 7) & ~7;
      if (hdr & BPF_RINGBUF_DISCARD_BIT) this.stats.discarded++;
      else {
        sink(this.data, off + BPF_RINGBUF_HDR_SZ, len);
        n++;
      }
      cons += BigInt(total);
      bytes += total;
    }
    if (bytes > 0) Atomics.store(this.cons, 0, cons);
    this.stats.records += n;
    this.stats.bytes += bytes;
    return n;
  }

  /**
   * Resolves true when records are waiting (at once if some already are),
   * false after timeoutMs without any. poll(2) runs on a libuv worker; one
   * wait at a time.
   */
  wait(timeoutMs: number): Promise<boolean> {
    this.assertOpen();
    if (this.pendingBytes > 0) return Promise.resolve(true);
    if (this.waiting !== null) return this.waiting;
    this.stats.waits++;
    this.pollfd.writeInt16LE(0, POLLFD_REVENTS);
    this.waiting = new Promise<boolean>((resolve, reject) => {
      pollAsync(this.pollfd, 1, Math.max(0, Math.trunc(timeoutMs)), (err: unknown, r: number) => {
        this.waiting = null;
        if (err) reject(err);
        else if (r < 0) reject(new DatapathError('poll ring', this.name, koffi.errno() || E.EIO));
        else resolve(r > 0 && (this.pollfd.readInt16LE(POLLFD_REVENTS) & POLLIN) !== 0);
      });
    });
    return this.waiting;
  }

  /** Unmaps the ring (after any wait in flight returned). The map's fd belongs to the datapath. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.waiting !== null) await this.waiting.catch(() => false);
    this.closed = true;
    raw.munmap(this.dataPtr, this.dataLen);
    raw.munmap(this.consPtr, PAGE_SIZE);
  }

  private assertOpen(): void {
    if (this.closed) throw new DatapathError('read ring', this.name, E.EBADF, 'the ring was closed');
  }
}
