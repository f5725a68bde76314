import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Dispatcher } from 'undici';
import { GatewayError, sendProblem, type Logger, type Target } from '@turnpike/core';
import { BodyLimitStream, parsedBody } from './body';
import { Attempt, type Exchange } from './exchange';
import { responseHeaders, transformRequest, type HeaderList } from './headers';
import type { CompiledRoute } from './route';
import type { CompiledService } from './service';
import type { RoutedRequest } from './types';
import { BAD_STATUS, DEADLINE, upstreamFailure, type UpstreamFailure } from './upstream-errors';

/** Answers built once: they carry nothing of the request. */
const BODY_TOO_LARGE = new GatewayError('ERR_TURNPIKE_BODY_TOO_LARGE');
const REQUEST_TIMEOUT = new GatewayError('ERR_TURNPIKE_REQUEST_TIMEOUT');
/** No target to call: 503, try again in a second. */
export const NO_TARGET = new GatewayError('ERR_TURNPIKE_NO_TARGET', {
  headers: { 'retry-after': '1' },
});
const NONE: readonly Target[] = Object.freeze([]);

/** What the forwarder needs of the router around it. */
export interface ForwardContext {
  readonly logger: Logger;
  /** Request bodies up to this many bytes are read whole before an upstream connection is taken. */
  readonly bufferBytes: number;
}

/** Whether the request carries a body (RFC 9112 §6.3: only Content-Length or Transfer-Encoding frame one). */
export function hasBody(req: IncomingMessage): boolean {
  const h = req.headers;
  const length = h['content-length'];
  return h['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Ends the exchange with an error answer: a problem response, or an unclean end once the head is out. */
export function answerError(ex: Exchange, err: GatewayError): void {
  const { req, res } = ex;
  // A body still arriving is not read any more: the connection cannot carry another request.
  if (!req.complete && hasBody(req)) res.shouldKeepAlive = false;
  sendProblem(req, res, err);
}

/** The upstream failed (or the deadline passed): settle once, log, answer. */
export function failUpstream(
  ctx: ForwardContext,
  ex: Exchange,
  failure: UpstreamFailure,
  cause: unknown,
  message = failure === DEADLINE ? 'upstream deadline passed' : 'upstream request failed',
): void {
  const kind = ex.res.headersSent ? 'cut-off' : failure.kind;
  if (!ex.settle(kind, failure.error, cause)) return;
  const e = cause as { code?: unknown; message?: unknown } | undefined;
  ctx.logger.warn(message, {
    requestId: (ex.req as RoutedRequest).id,
    route: ex.route.info.name,
    service: ex.route.service,
    kind,
    code: e?.code,
    error: e?.message,
  });
  answerError(ex, failure.error);
}

function onDeadline(ctx: ForwardContext, ex: Exchange): void {
  ex.timer = undefined;
  if (ex.attempt === undefined) {
    // Still reading a buffered body: the client was slow, not the upstream (which was never
    // called). A 408 that passive health and breakers do not count.
    ex.res.shouldKeepAlive = false;
    return reject(ex, REQUEST_TIMEOUT);
  }
  failUpstream(ctx, ex, DEADLINE, undefined);
}

/** A transfer coding other than chunked (RFC 9112 §6.1): its bytes cannot be passed on as they are. */
function codedResponse(raw: Buffer[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 17 && name.toString('latin1').toLowerCase() === 'transfer-encoding') {
      if (raw[i + 1]!.toString('latin1').trim().toLowerCase() !== 'chunked') return true;
    }
  }
  return false;
}

/** Passes an informational response on (RFC 9110 §15.2): 102 and 103; never to an HTTP/1.0 client. */
function informational(ex: Exchange, status: number, raw: Buffer[]): void {
  const { req, res } = ex;
  if (req.httpVersionMinor === 0 && req.httpVersionMajor === 1) return;
  if (status === 102) {
    res.writeProcessing();
    return;
  }
  if (status !== 103) return;
  const hints: Record<string, string | string[]> = {};
  const list = responseHeaders(raw, ex.route.responseHeaders);
  for (let i = 0; i < list.length; i += 2) {
    const value = list[i + 1]!;
    hints[(list[i] as string).toLowerCase()] = value;
  }
  try {
    res.writeEarlyHints(hints);
  } catch {
    // A Link header Node refuses: the hint is dropped, the response goes on.
  }
}

/** The head a tap sees: what the client gets, less this request's id. */
function withoutRequestId(list: HeaderList, id: string | undefined): HeaderList {
  if (id === undefined) return list.slice();
  const out: HeaderList = [];
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i] as string;
    if (name === 'X-Request-ID' && list[i + 1] === id) continue;
    out.push(name, list[i + 1]!);
  }
  return out;
}

/** The undici handler of one attempt: streams the upstream response straight to the client. */
class Forward implements Dispatcher.DispatchHandler {
  private resume: (() => void) | undefined = undefined;
  /** Resumes undici once the client has drained: built on the first backpressure only. */
  private onDrain: (() => void) | undefined = undefined;

  constructor(
    private readonly ctx: ForwardContext,
    private readonly ex: Exchange,
    private readonly attempt: Attempt,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    const ex = this.ex;
    if (ex.state === 'settled' || ex.attempt !== this.attempt) return abort();
    ex.abort = abort;
    this.attempt.phase = 'sent';
  }

  onBodySent(chunk: Buffer | number): void {
    this.attempt.bytesSent += typeof chunk === 'number' ? chunk : chunk.length;
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    const ex = this.ex;
    if (ex.state === 'settled') return false;
    // llhttp takes any three digits ("099"); undici hands it over, then asserts. (It refuses
    // four digits itself: a protocol error.)
    if (status < 100) {
      failUpstream(this.ctx, ex, BAD_STATUS, new Error(`upstream status ${status}`));
      return false;
    }
    if (status < 200) {
      if (status !== 101) informational(ex, status, raw);
      return true;
    }
    const attempt = this.attempt;
    attempt.status = status;
    attempt.headAt = performance.now();
    attempt.phase = 'head';
    if (codedResponse(raw)) {
      failUpstream(this.ctx, ex, BAD_STATUS, new Error('upstream transfer coding refused'));
      return false;
    }
    const req = ex.req as RoutedRequest;
    const res = ex.res;
    const id = req.id;
    const list = responseHeaders(raw, ex.route.responseHeaders, id);
    const tap = ex.tap;
    if (tap !== undefined) ex.sink = tap({ status, headers: withoutRequestId(list, id) }, req);
    try {
      res.writeHead(status, list);
    } catch (err) {
      failUpstream(this.ctx, ex, upstreamFailure(err), err);
      return false;
    }
    attempt.phase = 'body';
    this.resume = resume;
    return true;
  }

  onData(chunk: Buffer): boolean {
    const ex = this.ex;
    if (ex.state === 'settled') return false;
    const attempt = this.attempt;
    attempt.bytesReceived += chunk.length;
    const sink = ex.sink;
    if (sink !== undefined) {
      if (attempt.bytesReceived > sink.maxBytes) {
        ex.sink = undefined;
        sink.end(false);
      } else sink.write(chunk);
    }
    if (ex.res.write(chunk)) return true;
    this.onDrain ??= () => this.resume?.();
    ex.res.once('drain', this.onDrain);
    return false;
  }

  onComplete(): void {
    const ex = this.ex;
    if (ex.state === 'settled') return;
    this.attempt.phase = 'done';
    ex.res.end();
    ex.settle('complete');
  }

  onError(err: Error): void {
    if (this.ex.state === 'settled') return;
    failUpstream(this.ctx, this.ex, upstreamFailure(err), err);
  }
}

/** Sends the request upstream with `body`: picks the target, opens the attempt, dispatches. */
function dispatchAttempt(
  ctx: ForwardContext,
  ex: Exchange,
  service: CompiledService,
  body: Buffer | BodyLimitStream | null,
): void {
  if (ex.state === 'settled') return;
  const req = ex.req;
  const h = req.headers;
  const target = service.pick(req, NONE);
  if (target === undefined) {
    return reject(ex, NO_TARGET);
  }
  if (!service.preserveHost) h.host = target.host;
  const attempt = new Attempt(target);
  ex.attempt = attempt;
  service
    .poolFor(target)
    .dispatch(
      { path: target.path + req.url!, method: req.method!, headers: h, body },
      new Forward(ctx, ex, attempt),
    );
}

/** The body too large while it was being read: 413, and the connection closes after it. */
function onBodyTooLarge(ex: Exchange): void {
  ex.res.shouldKeepAlive = false;
  if (ex.settle('rejected', BODY_TOO_LARGE)) answerError(ex, BODY_TOO_LARGE);
}

/**
 * Reads a body of unknown or small length into memory up to `bufferBytes` before a
 * connection is taken (nginx's proxy_request_buffering): slow uploads then hold no upstream
 * socket. A body that grows past it is streamed, what was read first included.
 */
function readBody(
  ctx: ForwardContext,
  ex: Exchange,
  limit: number,
  send: (body: Buffer | BodyLimitStream) => void,
): void {
  const req = ex.req;
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer): void => {
    size += chunk.length;
    if (size > limit) {
      done();
      return onBodyTooLarge(ex);
    }
    chunks.push(chunk);
    if (size <= ctx.bufferBytes) return;
    done();
    const stream = new BodyLimitStream(limit, ex, onBodyTooLarge);
    for (const c of chunks) stream.write(c);
    req.pipe(stream);
    send(stream);
  };
  const onEnd = (): void => {
    done();
    if (ex.state !== 'settled')
      send(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  };
  const done = (): void => {
    req.off('data', onData);
    req.off('end', onEnd);
  };
  req.on('data', onData);
  req.on('end', onEnd);
}

/**
 * What every forwarded request gets once the proxy stage takes it: the deadline (it bounds
 * reading the body too), the route's rewrite and header transform, the request id.
 */
export function prepare(ctx: ForwardContext, ex: Exchange, timeoutMs: number): void {
  const req = ex.req;
  const route = ex.route;
  ex.state = 'forwarding';
  ex.timer = setTimeout(onDeadline, timeoutMs, ctx, ex);
  ex.timer.unref(); // the sockets keep the process up while the request is live
  if (route.rewrite !== undefined) {
    const url = req.url!;
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    req.url = route.rewrite(path, ex.segments) + (q === -1 ? '' : url.slice(q));
  }
  if (route.requestHeaders !== undefined) transformRequest(req.headers, route.requestHeaders);
  const id = (req as RoutedRequest).id;
  if (id !== undefined) req.headers['x-request-id'] = id;
}

/** The proxy stage of a service route: the body, the target, the attempt. */
export function forwarder(
  ctx: ForwardContext,
  route: CompiledRoute,
  service: CompiledService,
): (ex: Exchange) => void {
  const limit = route.bodyLimit;
  return function forward(ex) {
    const req = ex.req;
    const h = req.headers;
    if (limit !== Infinity) {
      const length = h['content-length'];
      if (length !== undefined && Number(length) > limit) return onBodyTooLarge(ex);
    }
    prepare(ctx, ex, service.timeoutMs);
    const id = (req as RoutedRequest).id;

    const chunked = h['transfer-encoding'] !== undefined;
    // undici frames the body itself, from what it is given.
    delete h['transfer-encoding'];
    if (req.readableEnded) {
      // A body parser ran before the gateway: send what it parsed, with a correct Content-Length.
      let body: Buffer;
      try {
        body = parsedBody(req, chunked);
      } catch (err) {
        ex.settle('rejected', err as GatewayError, err);
        ctx.logger.error('route failed', {
          requestId: id,
          route: route.info.name,
          error: String((err as Error).cause ?? err),
        });
        return answerError(ex, err as GatewayError);
      }
      if (body.length > limit) return onBodyTooLarge(ex);
      return dispatchAttempt(ctx, ex, service, body.length === 0 ? null : body);
    }
    const length = h['content-length'];
    if (!chunked && (length === undefined || length === '0')) {
      return dispatchAttempt(ctx, ex, service, null);
    }
    if (!chunked && Number(length) > ctx.bufferBytes) {
      const stream = new BodyLimitStream(limit, ex, onBodyTooLarge);
      req.pipe(stream);
      return dispatchAttempt(ctx, ex, service, stream);
    }
    readBody(ctx, ex, limit, (body) => {
      if (Buffer.isBuffer(body)) h['content-length'] = String(body.length);
      dispatchAttempt(ctx, ex, service, body);
    });
  };
}

/** Answers `res` for an exchange the router refuses before forwarding. */
export function reject(ex: Exchange, err: GatewayError): void {
  if (ex.settle('rejected', err)) answerError(ex, err);
}
