// Fetching a list: http(s) with conditional headers (If-None-Match,
// If-Modified-Since) through Node's fetch, or a file on the control plane's
// host (its size and modification time play the ETag). The whole fetch,
// body included, must finish within the timeout, and the body (after
// decompression) may not pass the size cap. The body is handed on as text
// chunks as it arrives, so parsing overlaps the download.
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { insideRoot } from './list-spec.js';
import { fileURLToPath } from 'node:url';

export interface Validators {
  readonly etag: string;
  readonly lastModified: string;
}

export type OpenedList =
  | { readonly kind: 'not-modified'; readonly httpStatus: number }
  | {
      readonly kind: 'body';
      readonly httpStatus: number;
      /** The validators to send next time. */
      readonly validators: Validators;
      /** The body as text chunks; throws FetchFailure (timeout, too large, connection lost). */
      readonly text: AsyncIterable<string>;
    };

export interface FetchOptions {
  readonly timeoutMs: number;
  readonly maxBytes: number;
  readonly userAgent: string;
  /** FLEETWALL_LIST_FILE_ROOT: file sources must resolve (symbolic links followed) inside it. */
  readonly fileRoot: string | undefined;
  /** Aborted when the control plane stops. */
  readonly signal?: AbortSignal;
}

function deadline(o: FetchOptions): AbortSignal {
  const t = AbortSignal.timeout(o.timeoutMs);
  return o.signal ? AbortSignal.any([t, o.signal]) : t;
}

/** The fetch did not give a list; the message says what happened, for the list's status. */
export class FetchFailure extends Error {
  override readonly name = 'FetchFailure';
  constructor(
    message: string,
    readonly httpStatus = 0,
  ) {
    super(message);
  }
}

function describe(e: unknown, what: string, o: FetchOptions): FetchFailure {
  if (e instanceof FetchFailure) return e;
  const err = e as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  if (o.signal?.aborted) return new FetchFailure(`${what}: stopped (the control plane is shutting down)`);
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') {
    return new FetchFailure(`${what}: no complete answer within ${o.timeoutMs / 1000}s (FLEETWALL_LIST_FETCH_TIMEOUT)`);
  }
  const cause = err?.cause?.code ?? err?.code ?? err?.cause?.message ?? err?.message ?? String(e);
  return new FetchFailure(`${what}: ${cause}`);
}

async function* capped(
  chunks: AsyncIterable<Uint8Array>,
  o: FetchOptions,
  what: string,
  httpStatus: number,
  done: () => void,
): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8');
  let bytes = 0;
  try {
    for await (const c of chunks) {
      bytes += c.byteLength;
      if (bytes > o.maxBytes) {
        throw new FetchFailure(`${what}: the list is larger than ${o.maxBytes} bytes (FLEETWALL_LIST_MAX_BYTES)`, httpStatus);
      }
      const text = decoder.decode(c, { stream: true });
      if (text !== '') yield text;
    }
    const tail = decoder.decode();
    if (tail !== '') yield tail;
  } catch (e) {
    throw describe(e, what, o);
  } finally {
    done();
  }
}

async function openHttp(url: string, v: Validators, o: FetchOptions): Promise<OpenedList> {
  const signal = deadline(o);
  const headers: Record<string, string> = { 'user-agent': o.userAgent, accept: 'text/plain, text/csv, application/json, */*;q=0.5' };
  if (v.etag !== '') headers['if-none-match'] = v.etag;
  if (v.lastModified !== '') headers['if-modified-since'] = v.lastModified;
  let res: Response;
  try {
    res = await fetch(url, { headers, signal, redirect: 'follow' });
  } catch (e) {
    throw describe(e, `GET ${url}`, o);
  }
  if (res.status === 304) {
    await res.body?.cancel().catch(() => undefined);
    return { kind: 'not-modified', httpStatus: 304 };
  }
  if (res.status !== 200) {
    await res.body?.cancel().catch(() => undefined);
    throw new FetchFailure(`GET ${url}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`, res.status);
  }
  const length = Number(res.headers.get('content-length') ?? NaN);
  if (length > o.maxBytes && !res.headers.get('content-encoding')) {
    await res.body?.cancel().catch(() => undefined);
    throw new FetchFailure(`GET ${url}: the list is ${length} bytes, more than ${o.maxBytes} (FLEETWALL_LIST_MAX_BYTES)`, 200);
  }
  const body = res.body ?? (async function* () {})();
  return {
    kind: 'body',
    httpStatus: 200,
    validators: { etag: res.headers.get('etag') ?? '', lastModified: res.headers.get('last-modified') ?? '' },
    text: capped(body as AsyncIterable<Uint8Array>, o, `GET ${url}`, 200, () => undefined),
  };
}

async function openFile(url: string, v: Validators, o: FetchOptions): Promise<OpenedList> {
  const path = fileURLToPath(url);
  const what = `${path} (on the control plane's host)`;
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    // The list was checked against the root when added; a symbolic link must not lead out of it since.
    const real = await realpath(path);
    if (o.fileRoot === undefined || !insideRoot(real, await realpath(o.fileRoot))) {
      throw new FetchFailure(`${what} is not inside FLEETWALL_LIST_FILE_ROOT${o.fileRoot ? ` (${o.fileRoot})` : ' (unset)'}`);
    }
    st = await stat(real);
  } catch (e) {
    throw describe(e, `cannot read ${what}`, o);
  }
  if (!st.isFile()) throw new FetchFailure(`${what} is not a regular file`);
  const etag = `file:${st.size}:${st.mtimeMs}`;
  if (etag === v.etag) return { kind: 'not-modified', httpStatus: 0 };
  if (st.size > o.maxBytes) throw new FetchFailure(`${what} is ${st.size} bytes, more than ${o.maxBytes} (FLEETWALL_LIST_MAX_BYTES)`);
  const stream = createReadStream(path, { signal: deadline(o) });
  return {
    kind: 'body',
    httpStatus: 0,
    validators: { etag, lastModified: '' },
    text: capped(stream as AsyncIterable<Uint8Array>, o, `reading ${what}`, 0, () => stream.destroy()),
  };
}

/** Opens the list at `url` (validated by list-spec.ts) for reading. Throws FetchFailure. */
export function openList(url: string, v: Validators, o: FetchOptions): Promise<OpenedList> {
  return url.startsWith('file:') ? openFile(url, v, o) : openHttp(url, v, o);
}
