import { Transform, type TransformCallback } from 'node:stream';
import qs from 'qs';
import { GatewayError } from '@turnpike/core';
import type { Exchange } from './exchange';
import type { RoutedRequest } from './types';

function unsendable(why: string): GatewayError {
  return new GatewayError('ERR_TURNPIKE_INTERNAL', { cause: new Error(why) });
}

/** Deep equality of parsed form values: strings, arrays and plain objects. */
function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

/**
 * A flat form as its name=value pairs, exactly as the client sent them: one of strings
 * only, or one with lists whose names hold brackets (only the simple parser keeps `b[c]` as
 * a name; it reads `a=1&a=2` as a list). Undefined otherwise: a list from `qs` may have been
 * `role[]=admin`, a list of one that must not go up as `role=admin`.
 */
function flatForm(body: object): string | undefined {
  const entries = Object.entries(body);
  let lists = false;
  let brackets = false;
  for (const [name, value] of entries) {
    if (Array.isArray(value)) {
      if (!value.every((v) => typeof v === 'string')) return undefined;
      lists = true;
    } else if (typeof value !== 'string') return undefined;
    if (name.indexOf('[') !== -1) brackets = true;
  }
  if (lists && !brackets) return undefined;
  const params = new URLSearchParams();
  for (const [name, value] of entries) {
    for (const v of Array.isArray(value) ? (value as string[]) : [value as string])
      params.append(name, v);
  }
  return params.toString();
}

/**
 * A form body parsed by express.urlencoded(), encoded again so that it parses back to
 * exactly what the parser produced. One of strings only goes as its pairs, names with
 * brackets included; one with lists or nesting as repeated names (`a=1&a=2`) or bracket
 * indices (`a[0]=x`, `a[0][b]=1`, what `qs` reads), whichever `qs` reads back the same. A body neither form reproduces (qs's depth and array limits
 * folded keys) is refused.
 */
function formBody(body: object): Buffer {
  const flat = flatForm(body);
  if (flat !== undefined) return Buffer.from(flat);
  for (const arrayFormat of ['repeat', 'indices'] as const) {
    const text = qs.stringify(body, { arrayFormat });
    const back = qs.parse(text, {
      depth: Infinity,
      arrayLimit: Infinity,
      parameterLimit: Infinity,
    });
    if (same(back, body)) return Buffer.from(text);
  }
  throw unsendable('the parsed form body cannot be encoded again faithfully');
}

/**
 * The body to send upstream when a body parser (express.json(), express.urlencoded(), …)
 * already consumed the request stream: encoded again from `req.body`, with a correct
 * Content-Length. JSON is re-serialised (JSON.stringify: big integers have already lost
 * precision in the parser). Throws a 500 GatewayError for a body the gateway cannot re-send
 * faithfully. `chunked`: the request was framed with Transfer-Encoding.
 */
export function parsedBody(req: RoutedRequest, chunked: boolean): Buffer {
  const body = req.body;
  const h = req.headers;
  let buf: Buffer;
  if (h['content-length'] === '0') buf = Buffer.alloc(0);
  else if (body === undefined || body === null) {
    if (h['content-length'] === undefined && !chunked) {
      buf = Buffer.alloc(0); // there was no body to read
    } else {
      // Someone read the body and kept nothing: sending an empty one would lose it.
      throw unsendable('the request body was consumed before the gateway and req.body is unset');
    }
  } else if (Buffer.isBuffer(body)) buf = body;
  else if (typeof body === 'string') buf = Buffer.from(body);
  else {
    const type = (h['content-type'] ?? '').toLowerCase();
    if (type.startsWith('application/json') || /^[a-z]+\/[^;]*\+json\b/.test(type)) {
      buf = Buffer.from(JSON.stringify(body));
    } else if (type.startsWith('application/x-www-form-urlencoded') && typeof body === 'object') {
      buf = formBody(body);
    } else {
      throw unsendable(`request body was consumed by a parser for ${type || 'an unknown type'}`);
    }
  }
  h['content-length'] = String(buf.length);
  // Body parsers inflate gzip, deflate and br bodies: what goes up is decoded.
  delete h['content-encoding'];
  return buf;
}

/**
 * Passes a request body upstream counting its bytes; past the limit it stops passing data
 * and calls `onExceed` once (which answers 413 and aborts the upstream call). It also stands
 * between the client's request and undici, which destroys the body stream it is given.
 */
export class BodyLimitStream extends Transform {
  private seen = 0;
  private exceeded = false;

  constructor(
    private readonly limit: number,
    private readonly ex: Exchange,
    private readonly onExceed: (ex: Exchange) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.exceeded) return callback();
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      this.exceeded = true;
      this.onExceed(this.ex);
      return callback();
    }
    callback(null, chunk);
  }
}
