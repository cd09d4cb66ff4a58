// Starts an in-process Agent on the fake datapath for Sync state-machine
// tests (the real kernel and real processes are in the *.e2e tests).

import pino from 'pino';
import { Agent } from '../../node-agent/src/agent.js';
import { loadConfig } from '../../node-agent/src/config.js';
import { FakeDatapath } from './fake-datapath.js';

let seq = 0;

export function fakePinDir(tag: string): string {
  return `/fake/${tag}-${process.pid}-${seq++}`;
}

export interface TestAgent {
  agent: Agent;
  dp: FakeDatapath;
}

export async function startTestAgent(controlPlane: string, pinDir: string, extra: string[] = []): Promise<TestAgent> {
  const cfg = loadConfig(
    [
      '--control-plane',
      controlPlane,
      '--node-name',
      'node-a',
      '--labels',
      'zone=a,role=edge',
      '--interfaces',
      'veth-a',
      '--pin-path',
      pinDir,
      '--http-addr',
      '127.0.0.1:0',
      '--counter-interval',
      '100ms',
      '--reconnect-min',
      '20ms',
      '--reconnect-max',
      '200ms',
      '--capacity-prefixes',
      '64',
      '--capacity-slots',
      '64',
      ...extra,
    ],
    {},
  );
  let dp: FakeDatapath | undefined;
  const agent = await Agent.start(cfg, {
    openDatapath: (o) => (dp = new FakeDatapath(o)),
    logger: pino({ level: process.env.AGENT_TEST_LOG ?? 'silent' }),
  });
  return { agent, dp: dp! };
}

/** A crash: the process state is gone, nothing is closed or detached. */
export async function crash(a: Agent): Promise<void> {
  await a.sync.stop();
  a.engine.stop();
  // http server: closed so the port is released (a dead process frees it too).
  await (a as unknown as { http: { close(): Promise<void> } }).http.close();
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
