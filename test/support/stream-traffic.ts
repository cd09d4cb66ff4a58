// Continuous UDP traffic between the namespaces of a NetnsPair: a sender in
// `a` sends from several source addresses in turn until stopped; a receiver
// in `b` counts what arrives per source. Used to prove that not one packet of
// a blocked source passes while the agent is killed and restarted. A
// datagram the receiving socket had no room for (its process starved on a
// busy machine) is not lost silently: stop() returns the receiving
// namespace's UDP RcvbufErrors over the stream's life, so a test can tell
// the socket's drops from the program's.

import type { ChildProcess } from 'node:child_process';
import type { NetnsPair } from './netns.js';
import { waitForOutput as expect } from './traffic.js';

const RECEIVER = `
const dgram = require('node:dgram');
const [addr, port] = process.argv.slice(1);
const s = dgram.createSocket({ type: addr.includes(':') ? 'udp6' : 'udp4', recvBufferSize: 4 << 20 });
const n = {};
s.on('message', (_m, r) => { n[r.address] = (n[r.address] || 0) + 1; });
s.bind(Number(port), addr, () => process.stdout.write('ready\\n'));
process.stdin.on('data', () => { process.stdout.write('counts ' + JSON.stringify(n) + '\\n'); });
`;

// Sends one datagram per source every interval until stdin says stop, then
// prints how many it sent per source.
const SENDER = `
const dgram = require('node:dgram');
const [dst, port, intervalMs, ...srcs] = process.argv.slice(1);
const socks = srcs.map((src) => { const s = dgram.createSocket(src.includes(':') ? 'udp6' : 'udp4'); s.bind(0, src); return s; });
const sent = Object.fromEntries(srcs.map((s) => [s, 0]));
const payload = Buffer.alloc(32, 0x61);
let stop = false;
process.stdin.on('data', () => { stop = true; });
(async () => {
  await new Promise((r) => setTimeout(r, 100));
  process.stdout.write('sending\\n');
  while (!stop) {
    for (let i = 0; i < socks.length; i++) {
      await new Promise((r) => socks[i].send(payload, Number(port), dst, (e) => { if (!e) sent[srcs[i]]++; r(); }));
    }
    await new Promise((r) => setTimeout(r, Number(intervalMs)));
  }
  process.stdout.write('sent ' + JSON.stringify(sent) + '\\n');
  for (const s of socks) s.close();
})();
`;

/** The receiving namespace's UDP (or UDP6) RcvbufErrors: datagrams a full socket buffer dropped. */
async function rcvbufErrors(bed: NetnsPair, v6: boolean): Promise<number> {
  const r = await bed.exec('b', ['cat', v6 ? '/proc/net/snmp6' : '/proc/net/snmp']);
  if (v6) {
    const m = /^Udp6RcvbufErrors\s+(\d+)$/m.exec(r.stdout);
    if (!m) throw new Error('no Udp6RcvbufErrors in /proc/net/snmp6');
    return Number(m[1]);
  }
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Udp: '));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/) ?? [];
  const i = names.indexOf('RcvbufErrors');
  if (i < 0 || values[i] === undefined) throw new Error('no Udp RcvbufErrors in /proc/net/snmp');
  return Number(values[i]);
}

export class StreamTraffic {
  private constructor(
    private readonly bed: NetnsPair,
    private readonly v6: boolean,
    private readonly rcvbufAtStart: number,
    private readonly rx: ChildProcess,
    private readonly tx: ChildProcess,
  ) {}

  /** Starts sending from `sources` (addresses of bed.a) to `dst` (bed.b). */
  static async start(bed: NetnsPair, sources: readonly string[], dst: string, intervalMs = 5): Promise<StreamTraffic> {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const v6 = dst.includes(':');
    const rcvbufAtStart = await rcvbufErrors(bed, v6);
    const rx = bed.spawn('b', [process.execPath, '-e', RECEIVER, dst, String(port)]);
    await expect(rx, /ready\n/);
    const tx = bed.spawn('a', [process.execPath, '-e', SENDER, dst, String(port), String(intervalMs), ...sources]);
    await expect(tx, /sending\n/);
    return new StreamTraffic(bed, v6, rcvbufAtStart, rx, tx);
  }

  /** Arrivals per source so far. */
  async received(): Promise<Record<string, number>> {
    const p = expect(this.rx, /counts (\{.*\})\n/);
    this.rx.stdin!.write('x');
    return JSON.parse((await p)[1]!) as Record<string, number>;
  }

  /**
   * Stops the sender; returns {sent, received} per source once the last
   * packets landed, and rcvbufErrors: datagrams of this stream's family the
   * receiving namespace's sockets dropped for a full buffer meanwhile.
   */
  async stop(): Promise<{ sent: Record<string, number>; received: Record<string, number>; rcvbufErrors: number }> {
    const p = expect(this.tx, /sent (\{.*\})\n/);
    this.tx.stdin!.write('x');
    const sent = JSON.parse((await p)[1]!) as Record<string, number>;
    await new Promise((r) => setTimeout(r, 300));
    const received = await this.received();
    this.kill();
    return { sent, received, rcvbufErrors: (await rcvbufErrors(this.bed, this.v6)) - this.rcvbufAtStart };
  }

  kill(): void {
    for (const c of [this.rx, this.tx]) if (c.exitCode === null) c.kill('SIGKILL');
  }
}
