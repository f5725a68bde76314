import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { listen, type Running } from './servers';

/** A raw TCP upstream: `onConnection` writes whatever bytes it likes. */
export function rawUpstream(onConnection: (socket: net.Socket) => void): Promise<Running> {
  return listen(
    net.createServer((socket) => {
      socket.on('error', () => {}); // the tests write and cut off as they like
      onConnection(socket);
    }),
  );
}

/** Whether a connection to 127.0.0.1:`port` is refused (nothing listens there). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/**
 * A port on which nothing listens. Taken below the ephemeral range (Linux: 32768–60999), where
 * no server of a parallel test (all on port 0) can start listening after it was chosen, as a
 * port freed by a stopped server could be handed out again.
 */
export async function deadPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (await refused(port)) return port;
  }
  throw new Error('deadPort: no refused port found in 20000-31999');
}

/** A listener whose connections never complete (backlog full): for connect timeouts. */
export async function blackHole(): Promise<{ url: string; close(): Promise<void> }> {
  const child = spawn('python3', [path.join(__dirname, '..', 'fixtures', 'no-accept.py')], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  // Fill the backlog so the next connection attempt hangs.
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 4; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  await Promise.all(fillers.slice(0, 1).map((s) => new Promise((r) => s.once('connect', r))));
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of fillers) s.destroy();
      child.stdin.end();
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** A fixed, valid keep-alive answer: 200 with the 2-byte body `ok`. */
export const OK_RESPONSE = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';

/** One request a recording upstream parsed off a connection. */
export interface RecordedRequest {
  /** The request line and header lines, without the blank line (latin1). */
  head: string;
  /** Header lines in order: lower-cased name, trimmed value. */
  headers: [string, string][];
  /** The body bytes read so far, framed by Content-Length or chunked (chunks decoded). */
  body: Buffer;
  /** The whole body has arrived. */
  complete: boolean;
}

/** One connection a recording upstream accepted. */
export interface RecordedConnection {
  socket: net.Socket;
  /** Every byte received on it, in order. */
  received: Buffer;
  /** The requests parsed from those bytes, in order. */
  requests: RecordedRequest[];
  /** The peer sent its FIN. */
  ended: boolean;
  /** The socket is closed. */
  closed: boolean;
  /** A 101 was answered: later bytes are a tunnel's, not requests. */
  upgraded: boolean;
}

/**
 * What a recording upstream answers to a request head: fixed bytes, or a function returning
 * the bytes (undefined: no answer now; the test may write to `conn.socket` later).
 */
export type RecordingAnswer =
  | string
  | Buffer
  | ((request: RecordedRequest, conn: RecordedConnection) => string | Buffer | undefined);

/** A raw TCP upstream that records the bytes of every connection. */
export interface RecordingUpstream extends Running {
  /** Every connection accepted, in order. */
  connections: RecordedConnection[];
  /** Every byte received, all connections, latin1. */
  text(): string;
  /** Every request parsed, all connections, in order of arrival per connection. */
  requests(): RecordedRequest[];
}

/** A recorded request's header value (the first of that name), or undefined. */
export function recordedHeader(request: RecordedRequest, name: string): string | undefined {
  const lower = name.toLowerCase();
  return request.headers.find(([n]) => n === lower)?.[1];
}

/**
 * A raw TCP upstream that keeps every connection's received bytes and answers each request
 * head as soon as it is read (before its body, as many servers do; `answerWhen: 'complete'`
 * waits for the body), keeping the connection open. Bodies are framed as a real server would
 * frame them: Content-Length, or chunked when Transfer-Encoding ends in chunked; the bytes
 * after a body are read as the next request.
 */
export async function recordingUpstream(
  answer: RecordingAnswer = OK_RESPONSE,
  options: { answerWhen?: 'head' | 'complete' } = {},
): Promise<RecordingUpstream> {
  const atHead = options.answerWhen !== 'complete';
  const connections: RecordedConnection[] = [];
  const running = await rawUpstream((socket) => {
    const conn: RecordedConnection = {
      socket,
      received: Buffer.alloc(0),
      requests: [],
      ended: false,
      closed: false,
      upgraded: false,
    };
    connections.push(conn);
    let pending = Buffer.alloc(0);
    /** The request whose body is being read, and how: bytes left, or chunked. */
    let current: { request: RecordedRequest; left: number | 'chunked' } | undefined;

    const respond = (request: RecordedRequest) => {
      const bytes = typeof answer === 'function' ? answer(request, conn) : answer;
      if (bytes === undefined) return;
      if (/^HTTP\/1\.1 101 /.test(bytes.toString('latin1'))) conn.upgraded = true;
      socket.write(bytes);
    };

    const feed = () => {
      for (;;) {
        if (conn.upgraded) return;
        if (current === undefined) {
          const end = pending.indexOf('\r\n\r\n');
          if (end === -1) return;
          const head = pending.subarray(0, end).toString('latin1');
          pending = pending.subarray(end + 4);
          const headers = head
            .split('\r\n')
            .slice(1)
            .map((line): [string, string] => {
              const i = line.indexOf(':');
              return [line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim()];
            });
          const request: RecordedRequest = {
            head,
            headers,
            body: Buffer.alloc(0),
            complete: false,
          };
          conn.requests.push(request);
          const te = recordedHeader(request, 'transfer-encoding');
          const cl = recordedHeader(request, 'content-length');
          current = {
            request,
            left: te !== undefined && /chunked\s*$/i.test(te) ? 'chunked' : Number(cl ?? 0) || 0,
          };
          if (atHead) respond(request);
          continue;
        }
        const { request } = current;
        if (current.left === 'chunked') {
          const eol = pending.indexOf('\r\n');
          if (eol === -1) return;
          const size = parseInt(pending.subarray(0, eol).toString('latin1'), 16);
          if (!Number.isFinite(size)) return; // not chunked after all: stop parsing
          if (size === 0) {
            // Last chunk, then trailers up to an empty line.
            const end = pending.indexOf('\r\n\r\n', eol);
            if (end === -1) return;
            pending = pending.subarray(end + 4);
            request.complete = true;
            current = undefined;
            if (!atHead) respond(request);
            continue;
          }
          if (pending.length < eol + 2 + size + 2) return;
          request.body = Buffer.concat([request.body, pending.subarray(eol + 2, eol + 2 + size)]);
          pending = pending.subarray(eol + 2 + size + 2);
          continue;
        }
        const take = Math.min(current.left, pending.length);
        request.body = Buffer.concat([request.body, pending.subarray(0, take)]);
        pending = pending.subarray(take);
        current.left -= take;
        if (current.left > 0) return;
        request.complete = true;
        current = undefined;
        if (!atHead) respond(request);
      }
    };

    socket.on('data', (chunk: Buffer) => {
      conn.received = Buffer.concat([conn.received, chunk]);
      pending = Buffer.concat([pending, chunk]);
      feed();
    });
    socket.on('end', () => (conn.ended = true));
    socket.on('close', () => (conn.closed = true));
  });
  return {
    ...running,
    connections,
    text: () => Buffer.concat(connections.map((c) => c.received)).toString('latin1'),
    requests: () => connections.flatMap((c) => c.requests),
  };
}
