// Memory per stream is bounded in bytes and time (issue 16, finding 5): an
// agent that stops reading is handed at most ~1 MiB of its own copies by the
// server, and is dropped (RESOURCE_EXHAUSTED AGENT_TOO_SLOW; it resumes on
// reconnect) once more than FLEETWALL_MAX_AGENT_QUEUE_BYTES wait for it or its
// oldest waiting message is older than FLEETWALL_MAX_AGENT_LAG. Agents that
// read get everything.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:http2';
import { status } from '@grpc/grpc-js';
import { Hello, SyncRequest, SyncResponse } from '../../proto/gen/fleetwall/v1/agent_service.js';
import { Status } from '../../proto/gen/google/rpc/status.js';
import { errorInfoOfStatus } from '../../control-plane/src/errors/status-details.js';
import { Action } from '../../proto/gen/fleetwall/v1/rule.js';
import { captureLogs, startTestControlPlane, type TestControlPlane } from '../support/control-plane.js';
import { eventually } from '../support/eventually.js';
import { startTestPostgres, type TestPostgres } from '../support/postgres.js';
import { rulesApi } from '../support/rule-fixtures.js';
import { SyncClient } from '../support/scripted-agent.js';

let pg: TestPostgres;
before(async () => {
  pg = await startTestPostgres();
});
after(async () => {
  await pg?.stop();
});

/** One gRPC message on the wire: flag, length, bytes. */
function frame(m: SyncRequest): Buffer {
  const body = Buffer.from(SyncRequest.encode(m).finish());
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/**
 * A Sync stream over a plain HTTP/2 client that says Hello and then reads
 * nothing until `drain()` (a grpc-js client would read on into its own
 * buffers; this one leaves the data in the flow-control window, as a stuck
 * agent or a dead network path does). Resolves with how the stream ended.
 */
function stalledAgent(cp: TestControlPlane, name: string, opts: { keepalive?: boolean } = {}) {
  const session = connect(`http://${cp.target}`);
  session.on('error', () => undefined);
  const req = session.request({
    ':method': 'POST',
    ':path': '/fleetwall.v1.AgentService/Sync',
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  req.on('error', () => undefined);
  const ended = new Promise<{ code: number; reason?: string; details: string }>((resolve) => {
    const done = (h: Record<string, unknown>) => {
      const bin = h['grpc-status-details-bin'];
      const st = typeof bin === 'string' ? Status.decode(Buffer.from(bin, 'base64')) : undefined;
      resolve({
        code: Number(h['grpc-status'] ?? -1),
        reason: st ? errorInfoOfStatus(st)?.reason : undefined,
        details: decodeURIComponent(String(h['grpc-message'] ?? '')),
      });
    };
    req.on('trailers', done);
    req.on('response', (h) => {
      if (h['grpc-status'] !== undefined) done(h);
    });
  });
  req.pause();
  req.write(frame({ msg: { $case: 'hello', value: Hello.fromPartial({ nodeName: name }) } }));
  // Pings keep it from being dropped as silent: only falling behind may drop it.
  const keepalive =
    opts.keepalive === false
      ? undefined
      : setInterval(() => req.write(frame({ msg: { $case: 'ping', value: { nonce: 1n, sendTime: new Date() } } })), 100);
  return {
    ended,
    /** Starts reading: the queued messages, then the status. */
    drain: () => {
      clearInterval(keepalive);
      req.on('data', () => undefined);
      req.resume();
    },
    /**
     * Starts reading as an agent does: answers each ping with a pong and
     * resolves once InSync arrives (or rejects if the stream ends first).
     */
    readAsAgent: () =>
      new Promise<void>((resolve, reject) => {
        clearInterval(keepalive);
        let buf = Buffer.alloc(0);
        req.on('data', (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
            const len = buf.readUInt32BE(1);
            const m = SyncResponse.decode(buf.subarray(5, 5 + len));
            buf = buf.subarray(5 + len);
            if (m.msg?.$case === 'ping') req.write(frame({ msg: { $case: 'pong', value: { nonce: m.msg.value.nonce } } }));
            if (m.msg?.$case === 'inSync') resolve();
          }
        });
        void ended.then((e) => reject(new Error(`the stream ended before InSync: ${e.reason} ${e.details}`)));
        req.resume();
      }),
    close: () => {
      clearInterval(keepalive);
      req.close();
      session.close();
    },
  };
}

function lines(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
}

test('an agent that stops reading is dropped by bytes; one that reads gets the whole revision', async () => {
  const cp = await startTestControlPlane(await pg.newDatabase(), {
    // More than one revision below (each about 0.9 MB), less than three.
    maxAgentQueueBytes: 2 * 1024 * 1024,
    maxAgentLagMs: 60_000,
    syncChunkBytes: 16 * 1024,
    // Long enough that a busy machine never drops the reading agent as silent.
    pingIntervalMs: 10_000,
  });
  const slow = stalledAgent(cp, 'slow-bytes');
  const reader = new SyncClient(cp.target, { nodeName: 'reader' }).connect();
  try {
    await reader.waitInSync();
    const api = rulesApi(cp.clients.rules);
    for (let i = 0; i < 3; i++) {
      const res = await api.import({ action: Action.ACTION_DENY, direction: i === 1 ? 2 : 1, comment: `i${i}`, allowPrivate: true }, [
        lines(40_000).map((l) => (i === 2 ? l.replace(/^10\./, '11.') : l)),
      ]);
      assert.equal(res.added, 40_000n);
      await reader.waitRevision(res.revision, 60_000);
    }
    assert.equal(reader.rules.size, 120_000, 'the reading agent has all three revisions');
    slow.drain();
    const end = await slow.ended;
    assert.equal(end.code, status.RESOURCE_EXHAUSTED, `${status[end.code]} ${end.details}`);
    assert.equal(end.reason, 'AGENT_TOO_SLOW');
    assert.match(end.details, /bytes are waiting for this agent.*FLEETWALL_MAX_AGENT_QUEUE_BYTES/);
  } finally {
    slow.close();
    reader.close();
    await cp.stop();
  }
});

test('an agent whose oldest waiting message is older than FLEETWALL_MAX_AGENT_LAG is dropped', async () => {
  const logs = captureLogs();
  const cp = await startTestControlPlane(
    await pg.newDatabase(),
    {
      maxAgentQueueBytes: 256 * 1024 * 1024,
      maxAgentLagMs: 500,
      syncChunkBytes: 16 * 1024,
      // The lag is checked on every ping tick; silence would take 3 s, the stalled agent pings every 100 ms.
      pingIntervalMs: 1000,
    },
    { logger: logs.logger },
  );
  const api = rulesApi(cp.clients.rules);
  await api.import({ action: Action.ACTION_DENY, allowPrivate: true }, [lines(40_000)]);
  // Its snapshot (about 1 MB) does not fit in the stream's flow-control window: it waits.
  const slow = stalledAgent(cp, 'slow-time');
  try {
    // The server's verdict is behind the data it could not send: wait for it to close the stream, then read.
    await eventually(
      () => logs.lines.some((l) => l.msg === 'closing Sync stream' && l.node === 'slow-time'),
      "the server closing the stalled agent's stream",
    );
    slow.drain();
    const end = await slow.ended;
    assert.equal(end.reason, 'AGENT_TOO_SLOW', `${status[end.code]} ${end.details}`);
    assert.match(end.details, /FLEETWALL_MAX_AGENT_LAG/);
  } finally {
    slow.close();
    await cp.stop();
  }
});

test('an agent still receiving its snapshot is not dropped as silent: silence counts from when what waited for it was sent', async () => {
  const logs = captureLogs();
  const cp = await startTestControlPlane(
    await pg.newDatabase(),
    {
      maxAgentQueueBytes: 256 * 1024 * 1024,
      maxAgentLagMs: 60_000,
      syncChunkBytes: 16 * 1024,
      // Silence would take 600 ms; the agent below reads nothing (and so can answer no ping) for longer.
      pingIntervalMs: 200,
    },
    { logger: logs.logger },
  );
  const api = rulesApi(cp.clients.rules);
  await api.import({ action: Action.ACTION_DENY, allowPrivate: true }, [lines(40_000)]);
  // Its snapshot (about 1 MB) does not fit in the stream's flow-control window: it waits, pings queued behind it.
  const slow = stalledAgent(cp, 'slow-reader', { keepalive: false });
  try {
    // Ten ping intervals pass with the snapshot waiting (each tick queues a ping behind it).
    await new Promise((r) => setTimeout(r, 2000));
    await slow.readAsAgent();
    const closed = logs.lines.find((l) => l.msg === 'closing Sync stream' && l.node === 'slow-reader');
    assert.equal(closed, undefined, `the server closed the stream of an agent that was receiving: ${JSON.stringify(closed)}`);
  } finally {
    slow.close();
    await cp.stop();
  }
});
