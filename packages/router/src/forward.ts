import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Dispatcher, Pool } from 'undici';
import {
  GatewayError,
  sendProblem,
  type AttemptEnd,
  type Logger,
  type Target,
} from '@turnpike/core';
import { BodyLimitStream, parsedBody } from './body';
import { Attempt, type Exchange, type ExchangeState } from './exchange';
import { responseHeaders, transformRequest, type HeaderList } from './headers';
import type { CompiledRoute } from './route';
import type { CompiledService } from './service';
import type { RoutedRequest } from './types';
import type { Listeners, OutcomeKind } from './outcome';
import type { CompiledHedge } from './route';
import type { AttemptEvent, HedgeEvent, RetryEvent } from './types';
import {
  BAD_STATUS,
  DEADLINE,
  PER_TRY,
  RESET,
  upstreamFailure,
  type UpstreamFailure,
} from './upstream-errors';

/** Answers built once: they carry nothing of the request. */
const BODY_TOO_LARGE = new GatewayError('ERR_TURNPIKE_BODY_TOO_LARGE');
const REQUEST_TIMEOUT = new GatewayError('ERR_TURNPIKE_REQUEST_TIMEOUT');
const NONE: readonly Target[] = Object.freeze([]);
/** A picker that threw: a 500 (the gateway's fault, not the upstream's). */
export const PICKER_FAILED = new GatewayError('ERR_TURNPIKE_INTERNAL');
/** Kinds that mean no connection was made. */
const NOT_SENT_KINDS: ReadonlySet<string> = new Set(['refused', 'dns', 'connect-timeout']);

/** What the forwarder needs of the router around it. */
export interface ForwardContext {
  readonly logger: Logger;
  /** Request bodies up to this many bytes are read whole before an upstream connection is taken. */
  readonly bufferBytes: number;
  readonly retried: Listeners<RetryEvent>;
  readonly hedged: Listeners<HedgeEvent>;
  readonly attempted: Listeners<AttemptEvent>;
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
  const headersSent = ex.res.headersSent;
  const kind = headersSent ? 'cut-off' : failure.kind;
  if (ex.state === 'settled') return;
  const e = cause as { code?: unknown; message?: unknown } | undefined;
  ctx.logger.warn(message, {
    requestId: (ex.req as RoutedRequest).id,
    route: ex.route.info.name,
    service: ex.route.service,
    kind,
    code: e?.code,
    error: e?.message,
  });
  if (!headersSent && ex.onFailure !== undefined) {
    return fallBack(ctx, ex, kind, failure.error, cause);
  }
  ex.settle(kind, failure.error, cause);
  answerError(ex, failure.error);
}

/**
 * A stage's fallback answers the failure (see answerFailure): it writes first, so that the
 * outcome carries the status the client got, then the exchange settles as the upstream's
 * failure. A fallback that throws is the gateway's fault: a 500, logged.
 */
function fallBack(
  ctx: ForwardContext,
  ex: Exchange,
  kind: OutcomeKind,
  error: GatewayError | undefined,
  cause: unknown,
): void {
  const answer = ex.onFailure!;
  ex.onFailure = undefined;
  ex.failureStatus = undefined;
  ex.fallback = 'upstream-failure';
  const { req, res } = ex;
  if (!req.complete && hasBody(req)) res.shouldKeepAlive = false;
  // No late upstream answer may write once the fallback has the response.
  ex.endCalls(kind);
  try {
    answer(req, res);
  } catch (err) {
    ctx.logger.error('fallback failed', {
      requestId: (req as RoutedRequest).id,
      route: ex.route.info.name,
      error: String(err),
    });
    sendProblem(req, res, PICKER_FAILED);
  }
  if (res.writableEnded) {
    ex.settle(kind, error, cause);
    return;
  }
  // An asynchronous fallback: the exchange settles when the response closes (the outcome then
  // has the status it sent), and the deadline still bounds it.
  ex.pending = { kind, error, cause };
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
    private readonly service: CompiledService,
    private readonly attempt: Attempt,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    const attempt = this.attempt;
    if (this.ex.state === 'settled' || attempt.end !== undefined) return abort();
    attempt.abort = abort;
    attempt.phase = 'sent';
  }

  onBodySent(chunk: Buffer | number): void {
    this.attempt.bytesSent += typeof chunk === 'number' ? chunk : chunk.length;
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    const ex = this.ex;
    const attempt = this.attempt;
    if (ex.state === 'settled' || attempt.end !== undefined) return false;
    // llhttp takes any three digits ("099"); undici hands it over, then asserts. (It refuses
    // four digits itself: a protocol error.)
    if (status < 100) return this.refuse(new Error(`upstream status ${status}`));
    if (status < 200) {
      if (status !== 101 && ex.live === 1) informational(ex, status, raw);
      return true;
    }
    attempt.status = status;
    attempt.headAt = performance.now();
    attempt.phase = 'head';
    if (attempt.timer !== undefined) {
      clearTimeout(attempt.timer);
      attempt.timer = undefined;
    }
    if (codedResponse(raw)) return this.refuse(new Error('upstream transfer coding refused'));
    const retry = this.service.retry;
    if (retry !== undefined && retry.statuses.has(status)) {
      // Decided before the head is written: another try still running answers instead, or a retry.
      if (ex.live > 1 || mayRetry(ex, this.service, 'status')) {
        // Ended first: undici calls onError from abort(), and it must find the try over.
        ex.finish(attempt, 'complete');
        ex.failure = undefined; // its response is gone: a retry with no target is a 503
        attempt.abort?.();
        if (ex.live === 0) scheduleRetry(this.ctx, ex, this.service, attempt, 'status');
        return false;
      }
    }
    const statuses = ex.failureStatus;
    if (statuses !== undefined && ex.live === 1 && statuses(status)) {
      // A status the stage's fallback answers instead (a circuit's failure status): the
      // upstream's response is dropped before its head is written.
      ex.finish(attempt, 'complete');
      attempt.abort?.();
      ex.attempt = attempt;
      fallBack(this.ctx, ex, 'complete', undefined, undefined);
      return false;
    }
    // The first head wins: every other try of the request is cancelled.
    if (ex.live > 1) cancelOthers(ex, attempt);
    ex.attempt = attempt;
    const req = ex.req as RoutedRequest;
    const res = ex.res;
    const id = req.id;
    const list = responseHeaders(raw, ex.route.responseHeaders, id);
    const tap = ex.tap;
    if (tap !== undefined) {
      try {
        ex.sink = tap({ status, headers: withoutRequestId(list, id) }, req);
      } catch (err) {
        // The gateway's own fault, not the upstream's: the response goes on, untapped.
        ex.sink = undefined;
        this.ctx.logger.error('response tap failed', { requestId: id, error: String(err) });
      }
    }
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

  /** A head the gateway does not forward: the try fails as bad-status. */
  private refuse(cause: Error): false {
    attemptFailed(this.ctx, this.ex, this.service, this.attempt, BAD_STATUS, cause);
    return false;
  }

  onData(chunk: Buffer): boolean {
    const ex = this.ex;
    const attempt = this.attempt;
    if (ex.state === 'settled' || attempt.end !== undefined) return false;
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
    if (ex.state === 'settled' || this.attempt.end !== undefined) return;
    this.attempt.phase = 'done';
    ex.res.end();
    ex.settle('complete');
  }

  onError(err: Error): void {
    if (this.ex.state === 'settled' || this.attempt.end !== undefined) return;
    attemptFailed(this.ctx, this.ex, this.service, this.attempt, upstreamFailure(err), err);
  }
}

/** A head won: the other tries still running are aborted, and count as cancelled. */
function cancelOthers(ex: Exchange, winner: Attempt): void {
  for (const a of ex.attempts!) {
    if (a === winner || a.end !== undefined) continue;
    ex.finish(a, 'cancelled');
    a.abort?.();
  }
}

/** Whether a failed try may be retried: count, body, method and budget (the budget last: it is spent). */
function mayRetry(ex: Exchange, service: CompiledService, end: AttemptEnd | 'status'): boolean {
  const policy = service.retry;
  if (policy === undefined || ex.retries >= policy.attempts || ex.replay === undefined)
    return false;
  const req = ex.req;
  if (!policy.allows(end, req.method!, req.headers)) return false;
  return service.budget.withdraw();
}

/**
 * One try failed before the client got a head: another try still running answers; else a
 * retry when the policy allows; else the failure is the answer. After the head: cut off.
 */
function attemptFailed(
  ctx: ForwardContext,
  ex: Exchange,
  service: CompiledService,
  attempt: Attempt,
  failure: UpstreamFailure,
  cause: unknown,
): void {
  if (ex.state === 'settled' || attempt.end !== undefined) return;
  if (ex.res.headersSent) return failUpstream(ctx, ex, failure, cause);
  // A connection error on a socket that had started the request (ETIMEDOUT, EHOSTUNREACH on
  // an open connection) is no proof that nothing was sent: it is a reset, never "not sent".
  if (attempt.phase !== 'connecting' && NOT_SENT_KINDS.has(failure.kind)) failure = RESET;
  ex.finish(attempt, failure.kind as AttemptEnd);
  attempt.abort?.();
  if (ex.live > 0) return;
  if (mayRetry(ex, service, failure.kind as AttemptEnd)) {
    ex.failure = failure;
    return scheduleRetry(ctx, ex, service, attempt, failure.kind as AttemptEnd);
  }
  ex.attempt = attempt;
  failUpstream(ctx, ex, failure, cause);
}

/** Waits the backoff, then sends the next try (to another target while untried ones remain). */
function scheduleRetry(
  ctx: ForwardContext,
  ex: Exchange,
  service: CompiledService,
  failed: Attempt,
  reason: AttemptEnd | 'status',
): void {
  const n = ++ex.retries;
  const delayMs = service.retry!.delay(n);
  if (ctx.retried.listening) {
    ctx.retried.emit({
      service: service.name,
      route: ex.route.info,
      req: ex.req,
      target: failed.target,
      reason,
      status: reason === 'status' ? failed.status : 0,
      retry: n,
      delayMs,
    });
  }
  ex.retryTimer = setTimeout(retryNow, delayMs, ctx, ex, service);
  ex.retryTimer.unref();
}

function retryNow(ctx: ForwardContext, ex: Exchange, service: CompiledService): void {
  ex.retryTimer = undefined;
  if (ex.state === 'settled') return;
  startAttempt(ctx, ex, service, ex.replay ?? null, false);
}

/** A try has had no head within the per-try timeout: it fails as a timeout (and may be retried). */
function onPerTry(
  ctx: ForwardContext,
  ex: Exchange,
  service: CompiledService,
  attempt: Attempt,
): void {
  attempt.timer = undefined;
  if (attempt.end !== undefined || attempt.headAt !== 0) return;
  attemptFailed(ctx, ex, service, attempt, PER_TRY, new Error('per-try timeout'));
}

/** After `afterMs` without a head: one more try of a GET or HEAD, on a target not tried yet. */
function onHedge(
  ctx: ForwardContext,
  ex: Exchange,
  service: CompiledService,
  hedge: CompiledHedge,
): void {
  ex.hedgeTimer = undefined;
  if (ex.state === 'settled' || ex.live === 0 || ex.res.headersSent) return;
  if (ex.hedges >= hedge.maxHedges) return;
  if (!startAttempt(ctx, ex, service, ex.replay ?? null, true)) return;
  const n = ++ex.hedges;
  if (ctx.hedged.listening) {
    ctx.hedged.emit({
      service: service.name,
      route: ex.route.info,
      req: ex.req,
      target: ex.attempt!.target,
      hedge: n,
    });
  }
  if (n < hedge.maxHedges) {
    ex.hedgeTimer = setTimeout(onHedge, hedge.afterMs, ctx, ex, service, hedge);
    ex.hedgeTimer.unref();
  }
}

/**
 * Sends one try of the request with `body`: picks the target, opens the attempt, dispatches.
 * A hedge goes only to a target not tried yet, and only within the budget; false when none went.
 */
function startAttempt(
  ctx: ForwardContext,
  ex: Exchange,
  service: CompiledService,
  body: Buffer | BodyLimitStream | null,
  hedge: boolean,
): boolean {
  if (ex.state === 'settled') return false;
  const req = ex.req;
  const h = req.headers;
  const tried = ex.attempt === undefined ? NONE : ex.tried();
  let target: Target | undefined;
  try {
    target = service.pick(req, tried);
  } catch (err) {
    // A user's picker that throws (also from a retry's or a hedge's timer): a 500, logged.
    if (hedge && ex.live > 0) return false;
    ctx.logger.error('target picker failed', {
      requestId: (req as RoutedRequest).id,
      service: service.name,
      error: String(err),
    });
    reject(ex, PICKER_FAILED);
    return false;
  }
  if (hedge) {
    // Only to a target not tried yet (by URL: a target set replaced at run time makes new objects).
    if (target === undefined || tried.some((t) => t.url === target.url)) return false;
    if (!service.budget.withdraw()) return false;
  }
  if (target === undefined) {
    // A retry that finds no target at all answers the failure it retried, not a 503.
    const failed = ex.failure;
    if (failed !== undefined) failUpstream(ctx, ex, failed, undefined);
    else reject(ex, service.noTarget());
    return false;
  }
  let pool: Pool;
  try {
    pool = service.poolFor(target);
  } catch (err) {
    // The service closed (router.close()) while a retry or hedge waited.
    if (hedge && ex.live > 0) return false;
    failUpstream(ctx, ex, ex.failure ?? RESET, err);
    return false;
  }
  if (!service.preserveHost) h.host = target.host;
  const attempt = new Attempt(target);
  ex.begin(attempt);
  const perTry = service.retry?.perTryTimeoutMs;
  if (perTry) {
    attempt.timer = setTimeout(onPerTry, perTry, ctx, ex, service, attempt);
    attempt.timer.unref();
  }
  if (ctx.attempted.listening) {
    ctx.attempted.emit({ service: service.name, route: ex.route.info, req, attempt });
  }
  pool.dispatch(
    { path: target.path + req.url!, method: req.method!, headers: h, body },
    new Forward(ctx, ex, service, attempt),
  );
  // dispatch() may have failed the try inline (undici calls onError synchronously).
  return (ex.state as ExchangeState) !== 'settled';
}

/** The first try of a request: the budget counts it, the body is kept for a replay, a hedge is armed. */
function dispatchFirst(
  ctx: ForwardContext,
  ex: Exchange,
  service: CompiledService,
  body: Buffer | BodyLimitStream | null,
  hedge: CompiledHedge | undefined,
): void {
  if (ex.state === 'settled') return;
  service.budget.deposit();
  ex.picker = service.picker;
  if (body === null || (Buffer.isBuffer(body) && body.length <= (service.retry?.bodyLimit ?? 0))) {
    ex.replay = body;
  }
  if (!startAttempt(ctx, ex, service, body, false)) return;
  const m = ex.req.method;
  if (hedge !== undefined && ex.replay !== undefined && (m === 'GET' || m === 'HEAD')) {
    ex.hedgeTimer = setTimeout(onHedge, hedge.afterMs, ctx, ex, service, hedge);
    ex.hedgeTimer.unref();
  }
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
  bufferBytes: number,
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
    if (size <= bufferBytes) return;
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
  const hedge = route.hedge;
  // A body a retry may replay is read whole, up to the retry limit when that is larger.
  const retry = service.retry;
  const bufferBytes = Math.max(ctx.bufferBytes, retry?.connectOnly === false ? retry.bodyLimit : 0);
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
      return dispatchFirst(ctx, ex, service, body.length === 0 ? null : body, hedge);
    }
    const length = h['content-length'];
    if (!chunked && (length === undefined || length === '0')) {
      return dispatchFirst(ctx, ex, service, null, hedge);
    }
    if (!chunked && Number(length) > bufferBytes) {
      const stream = new BodyLimitStream(limit, ex, onBodyTooLarge);
      req.pipe(stream);
      return dispatchFirst(ctx, ex, service, stream, hedge);
    }
    readBody(bufferBytes, ex, limit, (body) => {
      if (Buffer.isBuffer(body)) h['content-length'] = String(body.length);
      dispatchFirst(ctx, ex, service, body, hedge);
    });
  };
}

/** Answers `res` for an exchange the router refuses before forwarding. */
export function reject(ex: Exchange, err: GatewayError): void {
  if (ex.settle('rejected', err)) answerError(ex, err);
}
