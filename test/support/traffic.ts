// Real traffic between the two namespaces of a NetnsPair (test/support/netns.ts).
//
//   const r = await ping(bed, { from: 'a', src: bed.a.v4Extra[0]!, dst: bed.b.v4, count: 5 });
//   // r = { sent: 5, received: 5 }
//   const u = await udp(bed, { from: 'a', src: bed.a.v6, dst: bed.b.v6, count: 20 });
//   // u = { sent: 20, received: 20 }  (counted by a receiver in the other namespace)
//
// Only addresses of the bed are used; nothing leaves the two namespaces.

import type { ChildProcess } from 'node:child_process';
import type { NetnsPair, Side } from './netns.js';

export interface TrafficResult {
  sent: number;
  received: number;
}

export interface PingOptions {
  from: Side;
  src: string;
  dst: string;
  count: number;
  /** Seconds between echo requests (root may go below 0.2). Default 0.05. */
  interval?: number;
  /** Seconds to wait for the last reply. Default 1. */
  wait?: number;
}

export async function ping(bed: NetnsPair, o: PingOptions): Promise<TrafficResult> {
  const argv = ['ping', '-n', '-q', '-c', String(o.count), '-i', String(o.interval ?? 0.05), '-W', String(o.wait ?? 1), '-I', o.src, o.dst];
  const r = await bed.exec(o.from, argv, 30_000);
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(r.stdout);
  if (!m) throw new Error(`ping gave no summary (exit ${r.code}): ${r.stdout} ${r.stderr}`);
  return { sent: Number(m[1]), received: Number(m[2]) };
}

export interface UdpOptions {
  from: Side;
  src: string;
  dst: string;
  count: number;
  port?: number;
  /** Payload bytes per datagram. Default 32. */
  size?: number;
}

const RECEIVER = `
const dgram = require('node:dgram');
const [addr, port] = process.argv.slice(1);
const s = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
let n = 0;
s.on('message', () => { n++; });
s.bind(Number(port), addr, () => process.stdout.write('ready\\n'));
process.stdin.on('data', () => { process.stdout.write('count ' + n + '\\n'); process.exit(0); });
`;

const SENDER = `
const dgram = require('node:dgram');
const [src, dst, port, count, size] = process.argv.slice(1);
const s = dgram.createSocket(src.includes(':') ? 'udp6' : 'udp4');
const payload = Buffer.alloc(Number(size), 0x61);
s.bind(0, src, async () => {
  for (let i = 0; i < Number(count); i++) {
    await new Promise((r) => s.send(payload, Number(port), dst, r));
    await new Promise((r) => setTimeout(r, 2));
  }
  s.close();
});
`;

/**
 * Resolves with the first match of `re` in what `child` prints to stdout from
 * now on; rejects on timeout, or if the child ends without printing it.
 */
export function waitForOutput(child: ChildProcess, re: RegExp, timeoutMs = 15_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const done = () => {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('close', onClose);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out waiting for ${re} (got "${buf}")`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) {
        done();
        resolve(m);
      }
    };
    // 'close' comes after stdout is drained (output can arrive after 'exit').
    const onClose = (code: number | null) => {
      done();
      const m = re.exec(buf);
      if (m) resolve(m);
      else reject(new Error(`exited (${code}) before ${re}: "${buf}"`));
    };
    child.stdout!.on('data', onData);
    child.once('close', onClose);
  });
}

/** Sends `count` UDP datagrams from src (in `from`) to dst (in the other namespace) and counts arrivals. */
export async function udp(bed: NetnsPair, o: UdpOptions): Promise<TrafficResult> {
  const to: Side = o.from === 'a' ? 'b' : 'a';
  const port = o.port ?? 9000 + Math.floor(Math.random() * 1000);
  const rx = bed.spawn(to, [process.execPath, '-e', RECEIVER, o.dst, String(port)]);
  try {
    await waitForOutput(rx, /ready\n/, 10_000);
    const tx = bed.spawn(o.from, [process.execPath, '-e', SENDER, o.src, o.dst, String(port), String(o.count), String(o.size ?? 32)]);
    const code = await new Promise<number | null>((resolve) => tx.once('exit', resolve));
    if (code !== 0) throw new Error(`udp sender exited with ${code}`);
    await new Promise((r) => setTimeout(r, 200));
    rx.stdin!.write('x');
    const m = await waitForOutput(rx, /count (\d+)\n/, 10_000);
    return { sent: o.count, received: Number(m[1]) };
  } finally {
    if (rx.exitCode === null) rx.kill('SIGKILL');
  }
}
