// The HTTP/2 stream bound of a gRPC connection is enforced, not only
// advertised (issue 16, finding 5): FLEETWALL_GRPC_MAX_CONCURRENT_STREAMS (7
// here) is in the server's SETTINGS, and what a client that opens more gets
// is what node's HTTP/2 (nghttp2) really does:
// - streams sent before the client has the server's SETTINGS (the first
//   flight) past the limit are refused one by one with REFUSED_STREAM; the
//   connection and its open streams go on and are served;
// - once it has them, node:http2 (as grpc-js) keeps to the limit itself: a
//   stream past it waits in the client's queue, unsent, until one ends;
// - a raw client that ignores the acknowledged limit loses its own
//   connection (GOAWAY with an error code, its streams reset): nghttp2 makes
//   this a connection error. Other connections and new clients are served
//   throughout.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ClientHttp2Session, type ClientHttp2Stream, connect, constants } from 'node:http2';
import { ListRulesRequest } from '../../../proto/gen/fleetwall/v1/rule_service.js';
import { Action } from '../../../proto/gen/fleetwall/v1/rule.js';
import { unaryCall } from '../../support/control-plane.js';
import { FRAME, rawHttp2 } from './raw-http2.js';
import { assertStillServes, type Rig, startRig } from './rig.js';

const LIMIT = 7;
const LIST_RULES = '/fleetwall.v1.RuleService/ListRules';
/** An empty ListRulesRequest in gRPC's length-prefixed framing. */
const EMPTY_MESSAGE = Buffer.from([0, 0, 0, 0, 0]);

let rig: Rig;

before(async () => {
  rig = await startRig({ grpcMaxConcurrentStreams: LIMIT });
  await rig.api.create({ rule: { cidr: '192.0.2.0/24', action: Action.ACTION_DENY, comment: 'kept' } });
});

after(async () => {
  await rig?.stop();
});

interface OpenCall {
  readonly stream: ClientHttp2Stream;
  /** The stream's RST code once it has closed (0 when it ended normally). */
  readonly closed: Promise<number>;
  /** grpc-status of the answer (rejects if the stream closes without one). */
  readonly answered: Promise<string | undefined>;
  /** Sends the request message and ends the client's side. */
  finish(): void;
}

/** A ListRules call opened and left waiting for its request message (so the stream stays open). */
function openListRules(session: ClientHttp2Session): OpenCall {
  const stream = session.request(
    { ':method': 'POST', ':path': LIST_RULES, 'content-type': 'application/grpc', te: 'trailers' },
    { endStream: false },
  );
  stream.on('error', () => undefined);
  stream.on('data', () => undefined);
  const closed = new Promise<number>((resolve) => stream.on('close', () => resolve(stream.rstCode ?? 0)));
  const answered = new Promise<string | undefined>((resolve, reject) => {
    stream.on('trailers', (t) => resolve(String(t['grpc-status'])));
    stream.on('close', () => reject(new Error(`stream ${stream.id} closed without trailers (RST ${stream.rstCode})`)));
  });
  answered.catch(() => undefined);
  return { stream, closed, answered, finish: () => stream.end(EMPTY_MESSAGE) };
}

test('the gRPC server advertises FLEETWALL_GRPC_MAX_CONCURRENT_STREAMS in its HTTP/2 SETTINGS', async () => {
  const session = connect(`http://${rig.cp.target}`);
  session.on('error', () => undefined);
  try {
    // Listening from the start: the server's SETTINGS cannot arrive before this tick ends.
    const settings = await new Promise<{ maxConcurrentStreams?: number }>((resolve) => session.once('remoteSettings', resolve));
    assert.equal(settings.maxConcurrentStreams, LIMIT);
  } finally {
    session.close();
  }
});

test('node:http2 opening more streams than the limit on one connection: the extra are refused (REFUSED_STREAM) or held by the client; the connection, its open streams and a new client are served', async () => {
  const session = connect(`http://${rig.cp.target}`);
  const sessionErrors: Error[] = [];
  session.on('error', (e) => sessionErrors.push(e));
  let goaway: number | undefined;
  session.on('goaway', (code) => (goaway = code));
  const settings = new Promise<{ maxConcurrentStreams?: number }>((resolve) => session.once('remoteSettings', resolve));
  try {
    // Opened in this tick: they leave in the first flight, before the server's SETTINGS can reach the client.
    const calls = Array.from({ length: LIMIT + 5 }, () => openListRules(session));
    assert.equal((await settings).maxConcurrentStreams, LIMIT);
    const refused = await Promise.all(calls.slice(LIMIT).map((c) => c.closed));
    assert.deepEqual(refused, Array(5).fill(constants.NGHTTP2_REFUSED_STREAM), 'the streams past the limit refused one by one');
    assert.deepEqual(
      calls.slice(0, LIMIT).map((c) => c.stream.closed),
      Array(LIMIT).fill(false),
      'the streams within the limit still open',
    );

    // The client now knows the limit: one more stream is kept in its own queue, unsent.
    const held = openListRules(session);
    held.finish();
    // A new client (its own connection) is served meanwhile.
    const listed = await unaryCall(rig.cp.clients.rules, 'listRules', ListRulesRequest.fromPartial({}));
    assert.equal(listed.rules.length, 1);
    assert.equal(session.state.outboundQueueSize, 1, "the stream past the limit waits in the client's queue");
    assert.equal(held.stream.closed, false);

    // The open streams are answered, then the held one goes out and is answered too.
    for (const c of calls.slice(0, LIMIT)) c.finish();
    assert.deepEqual(await Promise.all(calls.slice(0, LIMIT).map((c) => c.answered)), Array(LIMIT).fill('0'));
    assert.equal(await held.answered, '0');
    // The connection itself was never closed or failed.
    assert.equal(goaway, undefined, 'no GOAWAY');
    assert.deepEqual(sessionErrors, []);
    assert.equal(session.destroyed, false);
    const again = openListRules(session);
    again.finish();
    assert.equal(await again.answered, '0', 'the connection serves new streams');
  } finally {
    session.close();
  }
  await assertStillServes(rig, 'streams past the limit');
});

test('a raw client opening streams past the acknowledged limit loses its own connection (GOAWAY); other connections and new clients are served', async () => {
  const [host, port] = rig.cp.target.split(':') as [string, string];
  // Another connection with a call open throughout.
  const bystander = connect(`http://${rig.cp.target}`);
  bystander.on('error', () => undefined);
  const waiting = openListRules(bystander);
  try {
    const raw = await rawHttp2(host, Number(port));
    try {
      const fields = { ':path': LIST_RULES, ':authority': rig.cp.target, 'content-type': 'application/grpc', te: 'trailers' };
      for (let i = 0; i <= LIMIT; i++) raw.headers(1 + 2 * i, fields);
      const goaway = await raw.frame((f) => f.type === FRAME.GOAWAY);
      await raw.closed;
      // nghttp2 treats a HEADERS past the acknowledged limit as a connection error; node 20
      // (nghttp2 1.61) sends it as INTERNAL_ERROR (upstream nghttp2 says PROTOCOL_ERROR).
      assert.ok(
        [constants.NGHTTP2_PROTOCOL_ERROR, constants.NGHTTP2_INTERNAL_ERROR].includes(goaway.payload.readUInt32BE(4)),
        `GOAWAY error code ${goaway.payload.readUInt32BE(4)}`,
      );
      const answeredStreams = raw.frames.filter((f) => f.type === FRAME.HEADERS).map((f) => f.streamId);
      assert.deepEqual(answeredStreams, [], 'no stream of that connection was answered');
    } finally {
      raw.destroy();
    }

    // The other connection's open call is answered, and a new client is served.
    waiting.finish();
    assert.equal(await waiting.answered, '0');
    const listed = await unaryCall(rig.cp.clients.rules, 'listRules', ListRulesRequest.fromPartial({}));
    assert.equal(listed.rules.length, 1);
  } finally {
    bystander.close();
  }
  await assertStillServes(rig, 'a client ignoring the stream limit');
});
