// Sequence-numbered UDP from one source (namespace a) to the host under test
// (namespace b): the sender stamps every datagram with a sequence number and
// remembers when (CLOCK_MONOTONIC, shared by every process of the host) it
// sent it; the receiver remembers the highest sequence that arrived. The
// first moment packets are dropped is the send time of the first sequence
// after the last one that arrived.

import type { ChildProcess } from 'node:child_process';
import type { NetnsPair } from '../../test/support/netns.js';

const SENDER = `
const dgram = require('node:dgram');
const [src, dst, port, intervalMs] = process.argv.slice(1);
const s = dgram.createSocket(src.includes(':') ? 'udp6' : 'udp4');
const sentAt = [];
let seq = 0;
s.bind(0, src, () => {
  setInterval(() => {
    const b = Buffer.alloc(16);
    b.writeUInt32BE(seq, 0);
    sentAt[seq] = process.hrtime.bigint();
    seq++;
    s.send(b, Number(port), dst);
  }, Number(intervalMs));
  process.stdout.write('ready\\n');
});
let buf = '';
process.stdin.on('data', (d) => {
  buf += d.toString();
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    const n = Number(line);
    const t = sentAt[n];
    process.stdout.write('at ' + n + ' ' + (t === undefined ? -1 : t) + ' ' + seq + '\\n');
  }
});
`;

const RECEIVER = `
const dgram = require('node:dgram');
const [addr, port] = process.argv.slice(1);
const s = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
let max = -1, count = 0;
const got = new Uint8Array(1 << 24);
s.on('message', (m) => { const q = m.readUInt32BE(0); count++; got[q & 0xffffff] = 1; if (q > max) max = q; });
s.bind(Number(port), addr, () => process.stdout.write('ready\\n'));
let buf = '';
process.stdin.on('data', (d) => {
  buf += d.toString();
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    if (line === 'max') { process.stdout.write('max ' + max + ' ' + count + '\\n'); continue; }
    const from = Number(line.split(' ')[1]);
    let q = from; while (q <= max && !got[q & 0xffffff]) q++;
    process.stdout.write('first ' + (q <= max ? q : -1) + '\\n');
  }
});
`;

class LineReader {
  private buf = '';
  private waiters: { re: RegExp; resolve: (m: RegExpExecArray) => void }[] = [];
  constructor(child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      this.pump();
    });
  }
  private pump(): void {
    for (;;) {
      const w = this.waiters[0];
      if (!w) return;
      const m = w.re.exec(this.buf);
      if (!m) return;
      this.buf = this.buf.slice(m.index + m[0].length);
      this.waiters.shift();
      w.resolve(m);
    }
  }
  next(re: RegExp, timeoutMs = 10_000): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}`)), timeoutMs);
      this.waiters.push({
        re,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      });
      this.pump();
    });
  }
}

export class SeqTraffic {
  private constructor(
    private readonly tx: ChildProcess,
    private readonly rx: ChildProcess,
    private readonly txr: LineReader,
    private readonly rxr: LineReader,
  ) {}

  static async start(bed: NetnsPair, src: string, dst: string, intervalMs = 1): Promise<SeqTraffic> {
    const port = 30000 + Math.floor(Math.random() * 20000);
    const rx = bed.spawn('b', [process.execPath, '-e', RECEIVER, dst, String(port)]);
    const rxr = new LineReader(rx);
    await rxr.next(/ready\n/);
    const tx = bed.spawn('a', [process.execPath, '-e', SENDER, src, dst, String(port), String(intervalMs)]);
    const txr = new LineReader(tx);
    await txr.next(/ready\n/);
    return new SeqTraffic(tx, rx, txr, rxr);
  }

  /** Highest sequence received so far (-1: none). */
  async maxReceived(): Promise<number> {
    const p = this.rxr.next(/max (-?\d+) (\d+)\n/);
    this.rx.stdin!.write('max\n');
    return Number((await p)[1]);
  }

  /** Lowest sequence >= `from` that arrived, or -1. */
  async firstReceivedFrom(from: number): Promise<number> {
    const p = this.rxr.next(/first (-?\d+)\n/);
    this.rx.stdin!.write(`first ${from}\n`);
    return Number((await p)[1]);
  }

  /** Send time (hrtime ns) of sequence `n`, or -1n if not sent yet; and the next sequence to be sent. */
  async sentAt(n: number): Promise<{ at: bigint; next: number }> {
    const p = this.txr.next(/at (-?\d+) (-?\d+) (\d+)\n/);
    this.tx.stdin!.write(`${n}\n`);
    const m = await p;
    return { at: BigInt(m[2]!), next: Number(m[3]) };
  }

  stop(): void {
    for (const c of [this.tx, this.rx]) if (c.exitCode === null) c.kill('SIGKILL');
  }
}
