// Runs fixtures/dp-child.ts inside a namespace of a test bed and collects its JSON lines.

import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import type { NetnsPair, Side } from './netns.js';

const root = resolve(import.meta.dirname, '../..');
const fixture = resolve(import.meta.dirname, './dataplane-child-main.ts');

export interface StepResult {
  step: number;
  ok: boolean;
  result?: any;
  holding?: number;
  error?: { code?: string; errno?: number; op?: string; target?: string; message?: string };
}

export interface ChildRun {
  child: ChildProcess;
  /** Resolves when `n` step lines arrived (or the process exited). */
  results(n: number): Promise<StepResult[]>;
}

export function startChild(bed: NetnsPair, side: Side, steps: unknown[]): ChildRun {
  const child = bed.spawn(side, [process.execPath, '--import', 'tsx', fixture, JSON.stringify(steps)], { cwd: root });
  const lines: StepResult[] = [];
  let buf = '';
  let stderr = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim()) lines.push(JSON.parse(line) as StepResult);
    }
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  child.once('exit', () => {
    exited = true;
    for (const w of waiters.splice(0)) w();
  });
  return {
    child,
    async results(n: number): Promise<StepResult[]> {
      const deadline = Date.now() + 60_000;
      while (lines.length < n && !exited && Date.now() < deadline) {
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 1000);
        });
      }
      if (lines.length < n) throw new Error(`child gave ${lines.length}/${n} results; stderr: ${stderr}`);
      return lines.slice(0, n);
    },
  };
}

/** Runs the steps to completion and returns every result; throws on a failed step unless allowed. */
export async function runChild(bed: NetnsPair, side: Side, steps: unknown[]): Promise<StepResult[]> {
  const run = startChild(bed, side, steps);
  const res = await run.results(steps.length);
  await new Promise((r) => (run.child.exitCode !== null ? r(null) : run.child.once('exit', r)));
  return res;
}
