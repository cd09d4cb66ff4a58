// A list publisher for tests: an HTTP server on 127.0.0.1, port 0, serving one
// mutable body with an ETag (and Last-Modified), answering 304 to a matching
// If-None-Match, or failing as told (an HTTP status, or never answering). It
// records every request, and the most requests it ever had in flight at once.
//
//   const srv = await startListServer('192.0.2.1\n192.0.2.2\n');
//   srv.url                    // http://127.0.0.1:PORT/list.txt
//   srv.set('192.0.2.1\n');    // a new body and ETag
//   srv.fail(500) / srv.hang() / srv.ok()
//   srv.requests               // [{ ifNoneMatch, ifModifiedSince, at, status }]
//   await srv.close();
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ListRequest {
  readonly ifNoneMatch: string | undefined;
  readonly ifModifiedSince: string | undefined;
  readonly at: number;
  status: number;
}

export interface ListServer {
  readonly url: string;
  readonly requests: ListRequest[];
  /** The most requests in flight at once. */
  readonly maxInFlight: number;
  set(body: string): void;
  /** Answer every request with this status. */
  fail(status: number): void;
  /** Accept requests and never answer them (until ok() or close()). */
  hang(): void;
  /** Wait this long before answering (a slow publisher). */
  delay(ms: number): void;
  ok(): void;
  close(): Promise<void>;
}

export async function startListServer(initial: string, path = '/list.txt'): Promise<ListServer> {
  let body = initial;
  let version = 1;
  let mode: { kind: 'ok' } | { kind: 'fail'; status: number } | { kind: 'hang' } = { kind: 'ok' };
  let delayMs = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const hung = new Set<ServerResponse>();
  const requests: ListRequest[] = [];
  const modified = () => new Date(Date.UTC(2024, 4, 29, 9, 0, version)).toUTCString();
  const server = createServer((req, res) => {
    const r: ListRequest = {
      ifNoneMatch: req.headers['if-none-match'],
      ifModifiedSince: req.headers['if-modified-since'],
      at: Date.now(),
      status: 0,
    };
    requests.push(r);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.on('close', () => inFlight--);
    if (req.url !== path) {
      r.status = 404;
      res.writeHead(404).end('not found');
      return;
    }
    if (mode.kind === 'hang') {
      hung.add(res);
      return;
    }
    const answer = () => {
      if (mode.kind === 'fail') {
        r.status = mode.status;
        res.writeHead(mode.status, { 'content-type': 'text/plain' }).end('publisher error\n');
        return;
      }
      const etag = `"v${version}"`;
      if (r.ifNoneMatch === etag) {
        r.status = 304;
        res.writeHead(304, { etag }).end();
        return;
      }
      r.status = 200;
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', etag, 'last-modified': modified() }).end(body);
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${path}`,
    requests,
    get maxInFlight() {
      return maxInFlight;
    },
    set(text: string) {
      body = text;
      version++;
    },
    fail(status: number) {
      mode = { kind: 'fail', status };
    },
    hang() {
      mode = { kind: 'hang' };
    },
    delay(ms: number) {
      delayMs = ms;
    },
    ok() {
      mode = { kind: 'ok' };
      for (const res of hung) res.destroy();
      hung.clear();
    },
    async close() {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
