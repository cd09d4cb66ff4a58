// The drop-rate phase's helper processes, run inside a namespace with tsx
// (bench/lib/attach-helper.ts, bench/lib/xdp-gen.ts), and the JSON-lines
// protocol the attach helper speaks.
import { join } from 'node:path';
import type { NetnsPair } from '../../test/support/netns.js';
import { root } from './options.js';

export function runNode(bed: NetnsPair, side: 'a' | 'b', script: string, args: string[], cpu?: number) {
  const pre = cpu === undefined ? [] : ['taskset', '-c', String(cpu)];
  return bed.spawn(side, [...pre, process.execPath, '--import', 'tsx', join(root, script), ...args], { cwd: root });
}

/** A child speaking JSON lines: one request, one reply. */
export function jsonChild(child: import('node:child_process').ChildProcess) {
  let buf = '';
  let err = '';
  const replies: string[] = [];
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      replies.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.once('exit', () => {
    for (const w of waiters.splice(0)) w();
  });
  const next = async (): Promise<Record<string, unknown>> => {
    while (replies.length === 0) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`helper exited: ${err}`);
      await new Promise<void>((r) => waiters.push(r));
    }
    return JSON.parse(replies.shift()!) as Record<string, unknown>;
  };
  return {
    next,
    async call(req: Record<string, unknown>): Promise<unknown> {
      child.stdin!.write(`${JSON.stringify(req)}\n`);
      const r = await next();
      if (!r.ok) throw new Error(`${req.op}: ${String(r.error)}`);
      return r.res;
    },
  };
}

/** The attach helper's side of the protocol. */
export type JsonChild = ReturnType<typeof jsonChild>;
