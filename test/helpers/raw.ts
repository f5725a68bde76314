import net from 'node:net';

/** A response read off a raw socket. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  /** Every header line, in order, lower-cased names. */
  headerLines: [string, string][];
  body: string;
}

/** Parses one HTTP/1.1 response (Content-Length or read-to-close; chunked is decoded). */
export function parseResponse(text: string): RawResponse {
  const split = text.indexOf('\r\n\r\n');
  const head = split === -1 ? text : text.slice(0, split);
  let body = split === -1 ? '' : text.slice(split + 4);
  const [statusLine, ...lines] = head.split('\r\n');
  const headerLines = lines.map((l) => {
    const i = l.indexOf(':');
    return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()] as [string, string];
  });
  const headers = Object.fromEntries(headerLines);
  if (headers['transfer-encoding'] === 'chunked') {
    let out = '';
    let rest = body;
    for (;;) {
      const eol = rest.indexOf('\r\n');
      const size = parseInt(rest.slice(0, eol), 16);
      if (!size) break;
      out += rest.slice(eol + 2, eol + 2 + size);
      rest = rest.slice(eol + 2 + size + 2);
    }
    body = out;
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, headerLines, body };
}

/** Sends `text` as-is on a new connection and reads until the server closes it. */
export function rawRequest(port: number, text: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(parseResponse(Buffer.concat(chunks).toString('latin1'))));
    socket.write(text);
  });
}

/** A GET for `path` with Connection: close, and any extra header lines. */
export function get(port: number, path: string, extra: string[] = []): Promise<RawResponse> {
  return rawRequest(
    port,
    [`GET ${path} HTTP/1.1`, 'Host: gateway.test', 'Connection: close', ...extra, '', ''].join(
      '\r\n',
    ),
  );
}

/**
 * Parses every response in `text`: the informational (1xx) ones first, each a head alone,
 * then the final one with its body. A 101 ends the list (what follows is not HTTP).
 */
export function parseResponses(text: string): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = text;
  while (/^HTTP\/1\.[01] 1\d\d /.test(rest)) {
    const split = rest.indexOf('\r\n\r\n');
    if (split === -1) break;
    const interim = parseResponse(rest.slice(0, split));
    out.push(interim);
    rest = rest.slice(split + 4);
    if (interim.status === 101) return out;
  }
  if (rest.length > 0) out.push(parseResponse(rest));
  return out;
}

/** A raw client connection whose received bytes are kept as they arrive. */
export interface RawClient {
  socket: net.Socket;
  /** Everything received so far (latin1). */
  text(): string;
  /** The server sent its FIN. */
  readonly ended: boolean;
  /** The socket is closed. */
  readonly closed: boolean;
}

/** Opens a raw connection and writes `text` (if given, as latin1 bytes) on it; nothing is parsed or answered. */
export function rawClient(
  port: number,
  text?: string,
  options: { allowHalfOpen?: boolean } = {},
): RawClient {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen });
  const chunks: Buffer[] = [];
  const state = { ended: false, closed: false };
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {}); // the tests look at what arrived, and at 'closed'
  socket.on('end', () => (state.ended = true));
  socket.on('close', () => (state.closed = true));
  if (text !== undefined) socket.write(text, 'latin1');
  return {
    socket,
    text: () => Buffer.concat(chunks).toString('latin1'),
    get ended() {
      return state.ended;
    },
    get closed() {
      return state.closed;
    },
  };
}
