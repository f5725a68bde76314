import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import qs from 'qs';
import { GatewayError } from '@turnpike/core';
import type { RoutedRequest } from './types';

/**
 * The body to send upstream when a body parser (express.json(), express.urlencoded(), …)
 * already consumed the request stream: re-serialised from `req.body` with a correct
 * Content-Length. Throws for a body the gateway cannot re-send.
 */
export function parsedBody(req: RoutedRequest): Buffer {
  const body = req.body;
  const h = req.headers;
  let buf: Buffer;
  if (h['content-length'] === '0') buf = Buffer.alloc(0);
  else if (body === undefined || body === null) {
    if (h['content-length'] === undefined && h['transfer-encoding'] === undefined) {
      buf = Buffer.alloc(0); // there was no body to read
    } else {
      // Someone read the body and kept nothing: sending an empty one would lose it.
      throw new GatewayError('ERR_TURNPIKE_INTERNAL', {
        cause: new Error('the request body was consumed before the gateway and req.body is unset'),
      });
    }
  } else if (Buffer.isBuffer(body)) buf = body;
  else if (typeof body === 'string') buf = Buffer.from(body);
  else {
    const type = (h['content-type'] ?? '').toLowerCase();
    if (type.startsWith('application/json') || /^[a-z]+\/[^;]*\+json\b/.test(type)) {
      buf = Buffer.from(JSON.stringify(body));
    } else if (type.startsWith('application/x-www-form-urlencoded')) {
      buf = Buffer.from(qs.stringify(body, { arrayFormat: 'repeat' }));
    } else {
      throw new GatewayError('ERR_TURNPIKE_INTERNAL', {
        cause: new Error(`request body was consumed by a parser for ${type || 'an unknown type'}`),
      });
    }
  }
  h['content-length'] = String(buf.length);
  delete h['transfer-encoding'];
  return buf;
}

/** A readable of a buffer, for the proxy's `buffer` option. */
export function bufferStream(buf: Buffer): PassThrough {
  const stream = new PassThrough();
  stream.end(buf);
  return stream;
}

/**
 * Counts the bytes of a chunked request body on its way upstream; past the limit it stops
 * passing data and calls `onExceed` once (which answers 413 and aborts the upstream request).
 */
export class BodyLimitStream extends Transform {
  private seen = 0;
  private exceeded = false;

  constructor(
    private readonly limit: number,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly onExceed: (req: IncomingMessage, res: ServerResponse) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.exceeded) return callback();
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      this.exceeded = true;
      this.onExceed(this.req, this.res);
      return callback();
    }
    callback(null, chunk);
  }
}
