import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  ConfigError,
  isFailedEnd,
  silentLogger,
  string,
  type Check,
  type Logger,
} from '@turnpike/core';
import {
  AccessLog,
  Metrics,
  Tracing,
  accessLogOptionsCheck,
  metricsOptionsCheck,
  tracingCheck,
  type AccessLogOptions,
  type CounterCell,
  type MetricsOptions,
  type TracedRequest,
  type TracingOptions,
} from '@turnpike/metrics';
import type { Balancer } from '@turnpike/balancer';
import type { DecisionListener } from '@turnpike/limiter';
import {
  clientIp,
  type AttemptInfo,
  type Outcome,
  type RouteInfo,
  type TurnpikeRouter,
  type UnroutedEvent,
} from '@turnpike/router';
import type { StateChangeEvent } from '@turnpike/breaker';
import type { Guards } from './guard';
import type { MountedRequest } from './next';

/** The gateway's `metrics`: createMetrics()'s options, and where the endpoint is served. */
export interface GatewayMetricsConfig extends MetricsOptions {
  /**
   * Serve the text format at this path under the mount (e.g. `'/metrics'`). Default: not
   * served (`gateway.metrics.handler` serves it wherever the host likes, e.g. an internal port).
   */
  path?: string;
}

/** An auth decision, as `auth_total{result}` counts it. */
export type AuthResult = 'allowed' | 'anonymous' | 'missing' | 'forbidden' | 'refused' | 'error';

/** Records one route's auth decisions: the method ('jwt', 'api-key', 'introspection', 'none') and the result. */
export type AuthRecorder = (req: IncomingMessage, method: string, result: AuthResult) => void;

const PATH = string({
  pattern: /^(?:\/[A-Za-z0-9._~-]+)+$/,
  expected: 'a path of plain segments starting with "/", without a trailing "/", e.g. "/metrics"',
});

/** Checks the gateway's `metrics`: true, false, or its options with `path`. */
export const metricsConfigCheck: Check<boolean | GatewayMetricsConfig> = (value, path) => {
  if (typeof value === 'boolean') return value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(
      path,
      'true, false or { prefix, path, registry, buckets, defaultMetrics }',
      value,
    );
  }
  const { path: at, ...rest } = value as GatewayMetricsConfig;
  if (at !== undefined) PATH(at, `${path}.path`);
  metricsOptionsCheck(rest, path);
  return value;
};

/** Checks the gateway's `accessLog`: true, false, or its options. */
export const accessLogConfigCheck: Check<boolean | AccessLogOptions> = (value, path) => {
  if (typeof value === 'boolean') return value;
  return accessLogOptionsCheck(value, path);
};

export const tracingConfigCheck: Check<boolean | TracingOptions> = tracingCheck;

/** The path of the metrics endpoint, or undefined when it is not served. */
export function metricsPath(
  metrics: boolean | GatewayMetricsConfig | undefined,
): string | undefined {
  return typeof metrics === 'object' ? metrics.path : undefined;
}

/** Marks a request whose auth decision was recorded by the auth stage itself. */
const AUTH_RECORDED = Symbol('turnpike.authRecorded');

/** The kinds in which the request failed (for the access log's "always" rule and span status). */
function failureOf(kind: string): string | undefined {
  return kind === 'client-gone' || isFailedEnd(kind) ? kind : undefined;
}

/**
 * The client's request body bytes: its Content-Length when it declared one, else (chunked)
 * what went upstream.
 */
function bytesIn(req: IncomingMessage, attempt: AttemptInfo | undefined): number {
  const declared = req.headers['content-length'];
  if (declared !== undefined) return Number(declared) || 0;
  return attempt === undefined ? 0 : attempt.bytesSent;
}

/** An attempt's time to its response head, or to its end without one, in ms. */
function upstreamMs(a: AttemptInfo, now: number): number {
  return (a.headAt || a.endedAt || now) - a.startedAt;
}

/**
 * The gateway's telemetry: Prometheus series, the access log and trace context, fed by the
 * router's outcomes and the packages' events (never by wrapping `res`). Built once per gateway.
 */
export class Telemetry {
  readonly metrics: Metrics | undefined;
  readonly metricsPath: string | undefined;
  readonly log: AccessLog | undefined;
  readonly tracing: Tracing | undefined;
  private readonly authRoutes = new Map<RouteInfo, AuthRecorder>();
  private readonly disposers: (() => void)[] = [];
  /** Tells the method of a refused credential (the gateway's auth). */
  methodOf: (req: IncomingMessage) => string = () => 'none';

  constructor(config: {
    metrics?: boolean | GatewayMetricsConfig;
    accessLog?: boolean | AccessLogOptions;
    tracing?: boolean | TracingOptions;
    logger?: Logger;
  }) {
    const m = config.metrics;
    if (m !== undefined && m !== false) {
      const { path: _path, ...options } = m === true ? {} : m;
      this.metrics = new Metrics(options, 'metrics');
      this.metricsPath = metricsPath(m);
    }
    const l = config.accessLog;
    if (l !== undefined && l !== false) this.log = new AccessLog(l === true ? {} : l, 'accessLog');
    const t = config.tracing;
    if (t !== undefined && t !== false) {
      const logger = config.logger ?? silentLogger;
      this.tracing = new Tracing(t === true ? {} : t, '@turnpike/gateway', (err) =>
        logger.error('tracing failed: the request goes on without its span', {
          error: String(err),
        }),
      );
    }
  }

  /** Whether anything listens to outcomes. */
  get any(): boolean {
    return this.metrics !== undefined || this.log !== undefined || this.tracing !== undefined;
  }

  /** The limiter's decision listener for a route's rate limit stage, when metrics are on. */
  rateLimitRecorder = (route: RouteInfo): DecisionListener | undefined => {
    const m = this.metrics;
    if (m === undefined) return undefined;
    const name = route.name;
    const cells = new Map<string, CounterCell>();
    return (_req, decision) => {
      let cell = cells.get(decision);
      if (cell === undefined) cells.set(decision, (cell = m.cell(m.rateLimits, name, decision)));
      cell.inc();
    };
  };

  /** The auth stage's recorder for a route, when metrics are on. */
  authRecorder = (route: RouteInfo): AuthRecorder | undefined => {
    const m = this.metrics;
    if (m === undefined) return undefined;
    const name = route.name;
    const record: AuthRecorder = (req, method, result) => {
      (req as { [AUTH_RECORDED]?: boolean })[AUTH_RECORDED] = true;
      m.count(m.auths, name, method, result);
    };
    this.authRoutes.set(route, record);
    return record;
  };

  /** Subscribes to the router, the balancers and the circuits. */
  wire(router: TurnpikeRouter, balancers: readonly Balancer[], guards: Guards): void {
    if (!this.any) return;
    const d = this.disposers;
    d.push(router.onOutcome(this.onOutcome));
    d.push(router.onUnrouted(this.onUnrouted));
    const tracing = this.tracing;
    if (tracing !== undefined) d.push(router.onAttempt((e) => tracing.attempt(e.req, e.attempt)));
    const m = this.metrics;
    if (m === undefined) return;
    d.push(router.onRetry((e) => m.count(m.retries, e.service, e.reason)));
    d.push(router.onHedge((e) => m.count(m.hedges, e.service)));
    for (const b of balancers) {
      d.push(b.onEject((e) => m.count(m.ejections, e.service, e.target.url)));
      const service = b.name;
      d.push(
        m.watchTargets(() =>
          b.status().map((t) => ({
            service,
            target: t.url,
            healthy: t.state === 'healthy',
            inFlight: t.inFlight,
          })),
        ),
      );
    }
    d.push(
      guards.onStateChange((e: StateChangeEvent) =>
        m.count(m.circuitTransitions, e.service, e.route ?? '', e.from, e.to),
      ),
    );
    d.push(m.watchCircuits(() => guards.circuitSamples()));
  }

  private readonly onOutcome = (o: Outcome): void => {
    const req = o.req as MountedRequest & TracedRequest & { auth?: { subject?: string } };
    const route = o.route;
    const service = o.service ?? '';
    const attempt = o.attempt;
    const status = o.status;
    const inBytes = bytesIn(req, attempt);
    // Built on each read: read once.
    const attempts = o.attempts;
    const m = this.metrics;
    if (m !== undefined) {
      m.observeRequest(
        req.method,
        route.name,
        service,
        status,
        o.durationMs / 1000,
        inBytes,
        attempt !== undefined ? attempt.bytesReceived : 0,
      );
      if (attempt !== undefined && service !== '') {
        const now = performance.now();
        for (const a of attempts) {
          m.observeUpstream(service, a.target.url, upstreamMs(a, now) / 1000);
          const end = a.end;
          if (end !== undefined && isFailedEnd(end)) m.count(m.upstreamErrors, service, end);
        }
      }
      // A credential the auth package refused (401, or 503/500 when it could not check it)
      // answered before the gateway's auth stage could record it.
      const auth = this.authRoutes.get(route);
      if (
        auth !== undefined &&
        o.kind === 'stage' &&
        (status === 401 || status >= 500) &&
        (req as { [AUTH_RECORDED]?: boolean })[AUTH_RECORDED] !== true
      ) {
        const method = this.methodOf(req);
        auth(req, method, status >= 500 ? 'error' : method === 'none' ? 'missing' : 'refused');
      }
    }
    const failure = failureOf(o.kind);
    const log = this.log;
    if (log !== undefined && log.wants(status, failure !== undefined)) {
      log.write({
        time: new Date().toISOString(),
        requestId: req.id,
        traceId: req.trace?.traceId,
        method: req.method,
        path: log.pathOf(req.originalUrl ?? req.url ?? '/'),
        route: route.name,
        service,
        target: attempt?.target.url ?? '',
        status,
        outcome: o.kind,
        durationMs: Math.round(o.durationMs * 1000) / 1000,
        upstreamMs:
          attempt === undefined
            ? null
            : Math.round(upstreamMs(attempt, performance.now()) * 1000) / 1000,
        bytesIn: inBytes,
        bytesOut: attempt !== undefined ? attempt.bytesReceived : 0,
        client: clientIp(req),
        subject: req.auth?.subject,
        retries: o.retries,
      });
    }
    this.tracing?.end(req, { route: route.path, status, failure }, attempts);
  };

  private readonly onUnrouted = (e: UnroutedEvent): void => {
    const req = e.req as MountedRequest & TracedRequest;
    const length = Number(req.headers['content-length']) || 0;
    this.metrics?.observeRequest(req.method, '', '', e.status, e.durationMs / 1000, length, 0);
    const log = this.log;
    if (log !== undefined && log.wants(e.status, false)) {
      log.write({
        time: new Date().toISOString(),
        requestId: req.id,
        traceId: req.trace?.traceId,
        method: req.method,
        path: log.pathOf(req.originalUrl ?? req.url ?? '/'),
        route: '',
        service: '',
        target: '',
        status: e.status,
        outcome: 'unrouted',
        durationMs: Math.round(e.durationMs * 1000) / 1000,
        upstreamMs: null,
        bytesIn: length,
        bytesOut: 0,
        client: clientIp(req),
        subject: undefined,
        retries: 0,
      });
    }
    this.tracing?.end(req, { route: undefined, status: e.status, failure: undefined });
  };

  close(): void {
    for (const dispose of this.disposers.splice(0)) dispose();
    this.metrics?.close();
    this.log?.close();
  }
}
