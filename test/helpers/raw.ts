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
