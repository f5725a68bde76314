import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { ConfigError, boolean, type Target } from '@turnpike/core';
import {
  SPAN_KIND_CLIENT,
  SPAN_KIND_SERVER,
  STATUS_ERROR,
  loadOtelApi,
  type OtelApi,
  type OtelSpan,
  type OtelTracer,
} from './otel';
import {
  assignTraceContext,
  formatTraceparent,
  newSpanId,
  type TraceContext,
  type TracedRequest,
} from './trace';

/** Options of the gateway's `tracing`. */
export interface TracingOptions {
  /**
   * Spans through OpenTelemetry's global tracer (one per request, one per upstream call): true
   * (the default) when `@opentelemetry/api` is installed, false for none, or the API module
   * itself (for an ESM application whose API the gateway cannot resolve).
   */
  opentelemetry?: boolean | OtelApi;
}

/** One upstream call as tracing sees it (an `AttemptInfo` of @turnpike/router). */
export interface TracedAttempt {
  readonly target: Target;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly status: number;
  readonly end: string | undefined;
}

/** How a request ended, for its span. */
export interface TracedEnd {
  readonly route: string | undefined;
  readonly status: number;
  /** A failure kind (an outcome kind that is not a success), for `error.type`. */
  readonly failure: string | undefined;
}

const SPAN = Symbol('turnpike.span');
type SpannedRequest = TracedRequest & { [SPAN]?: OtelSpan };

/** `performance.now()` ms to epoch ms, as OpenTelemetry takes times. */
function epoch(at: number): number {
  return performance.timeOrigin + at;
}

/** Checks the gateway's `tracing`: true, false, or `{ opentelemetry }`. */
export function tracingCheck(value: unknown, path: string): boolean | TracingOptions {
  if (typeof value === 'boolean') return value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(path, 'true, false or { opentelemetry }', value);
  }
  for (const key of Object.keys(value)) {
    if (key !== 'opentelemetry') {
      throw new ConfigError(`${path}.${key}`, 'a known key (one of opentelemetry)', key);
    }
  }
  const otel = (value as TracingOptions).opentelemetry;
  if (otel !== undefined && typeof otel !== 'boolean') {
    const api = otel as Partial<OtelApi> | null;
    if (typeof api !== 'object' || api === null || typeof api.trace?.getTracer !== 'function') {
      throw new ConfigError(
        `${path}.opentelemetry`,
        "true, false, or the @opentelemetry/api module (import * as api from '@opentelemetry/api')",
        otel,
      );
    }
  } else if (otel !== undefined) boolean(otel, `${path}.opentelemetry`);
  return value;
}

/**
 * W3C trace context for every request, and OpenTelemetry spans when the API is there: a
 * server span per request (the caller's span its parent), a client span per upstream call
 * (the request's its parent, its id the parent id upstream).
 */
export class Tracing {
  private readonly api: OtelApi | undefined;
  private readonly tracer: OtelTracer | undefined;
  private readonly attemptSpans = new WeakMap<object, OtelSpan>();

  constructor(
    options: TracingOptions = {},
    name = '@turnpike/gateway',
    /** Hears a failure of the OpenTelemetry SDK (a span processor that throws): the request goes on without its span. */
    private readonly onError: (err: unknown) => void = () => {},
  ) {
    const otel = options.opentelemetry ?? true;
    this.api = otel === false ? undefined : otel === true ? loadOtelApi() : otel;
    this.tracer = this.api?.trace.getTracer(name);
    // With the API installed and no SDK registered, the global provider's delegate is the API's
    // no-op one: a span would go nowhere, so none is started (an SDK registered later is seen
    // on the next request).
    const provider = this.api?.trace.getTracerProvider?.();
    const delegate = provider?.getDelegate?.();
    if (delegate?.constructor?.name === 'NoopTracerProvider') {
      this.provider = provider;
      this.noop = delegate;
    }
  }

  private readonly provider: { getDelegate?(): object } | undefined;
  private readonly noop: object | undefined;

  /** Whether the global provider is still the API's no-op one. */
  private get idle(): boolean {
    return this.noop !== undefined && this.provider!.getDelegate!() === this.noop;
  }

  /** A request arrives: its trace context, and its server span (ended by {@link end}, or when the response closes). */
  enter(req: IncomingMessage, res: ServerResponse): TraceContext {
    const trace = assignTraceContext(req);
    if (this.tracer === undefined || this.idle) return trace;
    try {
      return this.serverSpan(req, res, trace, this.tracer);
    } catch (err) {
      this.onError(err);
      return (req as SpannedRequest).trace ?? trace;
    }
  }

  private serverSpan(
    req: IncomingMessage,
    res: ServerResponse,
    trace: TraceContext,
    tracer: OtelTracer,
  ): TraceContext {
    const api = this.api!;
    let parent = api.ROOT_CONTEXT;
    if (trace.parentSpanId !== undefined) {
      parent = api.trace.setSpanContext(parent, {
        traceId: trace.traceId,
        spanId: trace.parentSpanId,
        traceFlags: parseInt(trace.flags, 16),
        isRemote: true,
        traceState:
          trace.tracestate === undefined ? undefined : api.createTraceState?.(trace.tracestate),
      });
    }
    const span = tracer.startSpan(
      req.method ?? 'HTTP',
      {
        kind: SPAN_KIND_SERVER,
        attributes: {
          'http.request.method': req.method,
          'url.path': pathOnly(req.url),
          'url.scheme': (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
          'network.protocol.version': req.httpVersion,
          'user_agent.original': req.headers['user-agent'],
        },
      },
      parent,
    );
    if (!span.isRecording()) return trace;
    const ids = span.spanContext();
    const traced: TraceContext = { ...trace, traceId: ids.traceId, spanId: ids.spanId };
    (req as SpannedRequest).trace = traced;
    (req as SpannedRequest)[SPAN] = span;
    req.headers.traceparent = formatTraceparent(traced.traceId, traced.spanId, traced.flags);
    // A request the router never reports (a health endpoint, a CORS preflight) ends here.
    res.once('close', () =>
      this.end(req, { route: undefined, status: res.statusCode, failure: undefined }),
    );
    return traced;
  }

  /** An upstream call starts: the `traceparent` it carries names a new span (its client span, when spans are made). */
  attempt(req: IncomingMessage, attempt: TracedAttempt): void {
    const r = req as SpannedRequest;
    const trace = r.trace;
    if (trace === undefined) return;
    let spanId: string | undefined;
    const parent = r[SPAN];
    if (parent !== undefined) {
      try {
        spanId = this.clientSpan(req, attempt, parent);
      } catch (err) {
        this.onError(err);
      }
    }
    req.headers.traceparent = formatTraceparent(trace.traceId, spanId ?? newSpanId(), trace.flags);
    if (trace.tracestate !== undefined) req.headers.tracestate = trace.tracestate;
  }

  private clientSpan(req: IncomingMessage, attempt: TracedAttempt, parent: OtelSpan): string {
    const t = attempt.target;
    const span = this.tracer!.startSpan(
      req.method ?? 'HTTP',
      {
        kind: SPAN_KIND_CLIENT,
        startTime: epoch(attempt.startedAt),
        attributes: {
          'http.request.method': req.method,
          'server.address': t.hostname,
          'server.port': t.port,
          'url.full': t.url.replace(/\/$/, '') + pathOnly(req.url),
        },
      },
      this.api!.trace.setSpan(this.api!.ROOT_CONTEXT, parent),
    );
    this.attemptSpans.set(attempt, span);
    return span.spanContext().spanId;
  }

  /** The request ended: its upstream calls' spans and its own, with the route and the status. */
  end(req: IncomingMessage, how: TracedEnd, attempts: readonly TracedAttempt[] = []): void {
    if (this.tracer === undefined) return;
    try {
      this.endSpans(req, how, attempts);
    } catch (err) {
      this.onError(err);
    }
  }

  private endSpans(req: IncomingMessage, how: TracedEnd, attempts: readonly TracedAttempt[]): void {
    for (const attempt of attempts) {
      const span = this.attemptSpans.get(attempt);
      if (span === undefined) continue;
      this.attemptSpans.delete(attempt);
      const failed =
        attempt.end !== undefined && attempt.end !== 'complete' && attempt.end !== 'upgraded';
      span.setAttributes({
        'http.response.status_code': attempt.status === 0 ? undefined : attempt.status,
        'error.type': failed
          ? attempt.end
          : attempt.status >= 500
            ? String(attempt.status)
            : undefined,
      });
      if (failed || attempt.status >= 500) span.setStatus({ code: STATUS_ERROR });
      span.end(epoch(attempt.endedAt || performance.now()));
    }
    const r = req as SpannedRequest;
    const span = r[SPAN];
    if (span === undefined) return;
    r[SPAN] = undefined;
    if (how.route !== undefined) {
      span.updateName(`${req.method ?? 'HTTP'} ${how.route}`);
    }
    span.setAttributes({
      'http.route': how.route,
      'http.response.status_code': how.status === 0 ? undefined : how.status,
      'error.type': how.failure ?? (how.status >= 500 ? String(how.status) : undefined),
    });
    if (how.failure !== undefined || how.status >= 500) span.setStatus({ code: STATUS_ERROR });
    span.end();
  }
}

function pathOnly(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
