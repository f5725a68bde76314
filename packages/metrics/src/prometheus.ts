import { METHODS, type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type LabelValues,
} from 'prom-client';
import { counterCell, histogramCell, type CounterCell, type HistogramCell } from './cells';
import {
  ConfigError,
  GatewayError,
  array,
  boolean,
  number,
  object,
  sendProblem,
  string,
  type Check,
} from '@turnpike/core';

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /** Prefix of every series name. Default `'gateway_'`. */
  prefix?: string;
  /** The prom-client registry to register in. Default: a new one of its own (never prom-client's global one). */
  registry?: Registry;
  /** Buckets of the duration histograms, in seconds, ascending. Default {@link DEFAULT_BUCKETS} (1 ms to 60 s). */
  buckets?: readonly number[];
  /** Also collect prom-client's process metrics (CPU, memory, event loop lag, GC) in the registry. Default false. */
  defaultMetrics?: boolean;
}

/** Duration buckets suited to a proxy, in seconds: 1 ms to 60 s. */
export const DEFAULT_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
]);

/** Body size buckets, in bytes: 64 B to 16 MiB. */
export const BYTE_BUCKETS: readonly number[] = Object.freeze([
  64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
]);

/** The names of the series, without the prefix. */
const SERIES = [
  'requests_total',
  'request_duration_seconds',
  'request_bytes',
  'response_bytes',
  'upstream_duration_seconds',
  'upstream_errors_total',
  'upstream_health',
  'upstream_in_flight',
  'upstream_ejections_total',
  'retries_total',
  'hedges_total',
  'circuit_breaker_state',
  'circuit_breaker_transitions_total',
  'rate_limit_total',
  'auth_total',
  'cache_total',
] as const;

/** One target of a service, as the gauges read it at scrape time. */
export interface TargetSample {
  readonly service: string;
  readonly target: string;
  readonly healthy: boolean;
  readonly inFlight: number;
}

/** One circuit, as the state gauge reads it at scrape time; `route` is '' for a service's circuit. */
export interface CircuitSample {
  readonly service: string;
  readonly route: string;
  readonly state: 'closed' | 'open' | 'half-open';
}

/** What {@link Metrics.requestStats} reads from the series: per route or per service. */
export interface SeriesStats {
  requests: number;
  /** Requests answered 5xx, or that got no answer (the client left, the upstream cut off). */
  errors: number;
  /** Latency percentiles in ms, estimated from the histogram's buckets; null before any request. */
  latencyMs: { p50: number; p90: number; p99: number } | null;
}

const CIRCUIT_STATE = { closed: 0, open: 1, 'half-open': 2 } as const;
const METHOD_NOT_ALLOWED = new GatewayError('ERR_TURNPIKE_METHOD_NOT_ALLOWED', {
  headers: { allow: 'GET, HEAD' },
});

/** Checks createMetrics()'s options (a ConfigError naming the field). */
export const metricsOptionsCheck: Check<MetricsOptions> = object<MetricsOptions>({
  prefix: string({
    pattern: /^[a-zA-Z_:][a-zA-Z0-9_:]*$/,
    expected: 'a Prometheus name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*), e.g. "gateway_"',
  }),
  registry: (value, path) => {
    const r = value as Partial<Registry> | null;
    if (
      typeof r !== 'object' ||
      r === null ||
      typeof r.metrics !== 'function' ||
      typeof r.getSingleMetric !== 'function' ||
      typeof r.registerMetric !== 'function'
    ) {
      throw new ConfigError(path, 'a prom-client Registry', value);
    }
    return value as Registry;
  },
  buckets: (value, path) => {
    const list = array(number({ min: 0 }), { min: 1 })(value, path);
    list.forEach((b, i) => {
      if (i > 0 && b <= list[i - 1]!) {
        throw new ConfigError(`${path}[${i}]`, 'buckets in ascending order, each larger', b);
      }
    });
    return list;
  },
  defaultMetrics: boolean,
});

/** The children of one request series, bound once per label set. */
interface RequestSeries {
  readonly count: CounterCell;
  readonly duration: HistogramCell;
  readonly requestBytes: HistogramCell;
  readonly responseBytes: HistogramCell;
}

/** Method label values: Node's methods, then `other` for any it does not know. */
const METHOD_LABELS: readonly string[] = [...METHODS, 'other'];
const METHOD_INDEX: ReadonlyMap<string, number> = new Map(METHODS.map((m, i) => [m, i]));

/** The index of a method's label value in {@link METHOD_LABELS}. */
function methodIndex(method: string | undefined): number {
  return (method === undefined ? undefined : METHOD_INDEX.get(method)) ?? METHODS.length;
}

/**
 * The Prometheus series of a gateway (or of any Express app, through `middleware`), on
 * prom-client, in a registry of their own. Label values are route names, service names,
 * target URLs and closed lists (methods, statuses, kinds): never a raw path, so a flood of
 * distinct paths adds no series. Each label set's children are bound once and kept.
 */
export class Metrics {
  readonly registry: Registry;
  readonly prefix: string;
  readonly requests: Counter<'method' | 'route' | 'service' | 'status'>;
  readonly requestDuration: Histogram<'method' | 'route' | 'service'>;
  readonly requestBytes: Histogram<'route' | 'service'>;
  readonly responseBytes: Histogram<'route' | 'service'>;
  readonly upstreamDuration: Histogram<'service' | 'target'>;
  readonly upstreamErrors: Counter<'service' | 'kind'>;
  readonly upstreamHealth: Gauge<'service' | 'target'>;
  readonly upstreamInFlight: Gauge<'service' | 'target'>;
  readonly ejections: Counter<'service' | 'target'>;
  readonly retries: Counter<'service' | 'reason'>;
  readonly hedges: Counter<'service'>;
  readonly circuitState: Gauge<'service' | 'route'>;
  readonly circuitTransitions: Counter<'service' | 'route' | 'from' | 'to'>;
  readonly rateLimits: Counter<'route' | 'result'>;
  readonly auths: Counter<'route' | 'method' | 'result'>;
  readonly caches: Counter<'route' | 'result'>;

  /** Whether the registry was given (its series are removed from it on close()). */
  private readonly shared: boolean;
  private readonly requestSeries = new Map<string, Map<string, Map<number, RequestSeries>>>();
  private readonly upstreamSeries = new Map<string, Map<string, HistogramCell>>();
  private readonly counterSeries = new Map<Counter<string>, Map<string, CounterCell>>();
  private readonly targetSources = new Set<() => Iterable<TargetSample>>();
  /** The counters and histograms {@link scrape} writes itself, a slice at a time. */
  private readonly sliced = new Map<SlicedMetric, 'counter' | 'histogram'>();
  private readonly circuitSources = new Set<() => Iterable<CircuitSample>>();

  constructor(options: MetricsOptions = {}, path = 'metrics') {
    const o = metricsOptionsCheck(options, path);
    const prefix = o.prefix ?? 'gateway_';
    const registry = o.registry ?? new Registry();
    // Every name is checked before any is registered: a clash leaves the registry as it was.
    const names = SERIES.map((n) => prefix + n);
    if (o.defaultMetrics === true) names.push(`${prefix}process_cpu_user_seconds_total`);
    const taken = names.find((n) => registry.getSingleMetric(n) !== undefined);
    if (taken !== undefined) {
      throw new ConfigError(
        `${path}.registry`,
        `a registry without a series named "${taken}" (another gateway, createMetrics() or the ` +
          'application registered it): give each one its own registry or prefix',
        prefix,
      );
    }
    this.shared = o.registry !== undefined;
    this.registry = registry;
    this.prefix = prefix;
    const buckets = [...(o.buckets ?? DEFAULT_BUCKETS)];
    const registers = [registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) =>
      new Counter<L>({ name: prefix + name, help, labelNames, registers });
    const histogram = <L extends string>(
      name: string,
      help: string,
      labelNames: L[],
      b: number[],
    ) => new Histogram<L>({ name: prefix + name, help, labelNames, buckets: b, registers });

    this.requests = counter('requests_total', 'Requests answered, by route and status.', [
      'method',
      'route',
      'service',
      'status',
    ]);
    this.requestDuration = histogram(
      'request_duration_seconds',
      'Time from the route match to the end of the response, in seconds.',
      ['method', 'route', 'service'],
      buckets,
    );
    this.requestBytes = histogram(
      'request_bytes',
      'Request body bytes from the client (its Content-Length, else the bytes sent upstream).',
      ['route', 'service'],
      [...BYTE_BUCKETS],
    );
    this.responseBytes = histogram(
      'response_bytes',
      "Response body bytes received from the upstream that answered (the gateway's own answers count 0).",
      ['route', 'service'],
      [...BYTE_BUCKETS],
    );
    this.upstreamDuration = histogram(
      'upstream_duration_seconds',
      'Each upstream call, from its start to the response head (to its end when no head came), in seconds.',
      ['service', 'target'],
      buckets,
    );
    this.upstreamErrors = counter(
      'upstream_errors_total',
      'Upstream calls that failed, by how (refused, dns, connect-timeout, reset, timeout, protocol, bad-status, cut-off).',
      ['service', 'kind'],
    );
    const targetSources = this.targetSources;
    const health: Gauge<'service' | 'target'> = new Gauge({
      name: `${prefix}upstream_health`,
      help: 'Whether a target takes traffic: 1 healthy, 0 unhealthy, ejected or draining.',
      labelNames: ['service', 'target'],
      registers,
      collect() {
        health.reset();
        inFlight.reset();
        for (const source of targetSources) {
          for (const t of source()) {
            const labels = { service: t.service, target: t.target };
            health.set(labels, t.healthy ? 1 : 0);
            inFlight.set(labels, t.inFlight);
          }
        }
      },
    });
    const inFlight: Gauge<'service' | 'target'> = new Gauge({
      name: `${prefix}upstream_in_flight`,
      help: 'Upstream calls in flight to a target.',
      labelNames: ['service', 'target'],
      registers,
    });
    this.upstreamHealth = health;
    this.upstreamInFlight = inFlight;
    this.ejections = counter(
      'upstream_ejections_total',
      'Targets ejected by passive health (outlier detection).',
      ['service', 'target'],
    );
    this.retries = counter('retries_total', 'Retries sent, by why the try before failed.', [
      'service',
      'reason',
    ]);
    this.hedges = counter('hedges_total', 'Hedged requests sent.', ['service']);
    const circuitSources = this.circuitSources;
    const circuit: Gauge<'service' | 'route'> = new Gauge({
      name: `${prefix}circuit_breaker_state`,
      help: 'A circuit breaker state: 0 closed, 1 open, 2 half-open (route is "" for a service circuit).',
      labelNames: ['service', 'route'],
      registers,
      collect() {
        circuit.reset();
        for (const source of circuitSources) {
          for (const c of source()) {
            circuit.set({ service: c.service, route: c.route }, CIRCUIT_STATE[c.state]);
          }
        }
      },
    });
    this.circuitState = circuit;
    this.circuitTransitions = counter(
      'circuit_breaker_transitions_total',
      'Circuit breaker state changes.',
      ['service', 'route', 'from', 'to'],
    );
    this.rateLimits = counter('rate_limit_total', 'Rate limit decisions.', ['route', 'result']);
    this.auths = counter('auth_total', 'Authentication decisions.', ['route', 'method', 'result']);
    this.caches = counter('cache_total', 'Response cache lookups.', ['route', 'result']);
    for (const c of [
      this.requests,
      this.upstreamErrors,
      this.ejections,
      this.retries,
      this.hedges,
      this.circuitTransitions,
      this.rateLimits,
      this.auths,
      this.caches,
    ])
      this.sliced.set(c as unknown as SlicedMetric, 'counter');
    for (const h of [
      this.requestDuration,
      this.requestBytes,
      this.responseBytes,
      this.upstreamDuration,
    ])
      this.sliced.set(h as unknown as SlicedMetric, 'histogram');
    if (o.defaultMetrics === true) collectDefaultMetrics({ register: registry, prefix });
  }

  /** Counts one request that ended: its status, duration and bytes. */
  observeRequest(
    method: string | undefined,
    route: string,
    service: string,
    status: number,
    seconds: number,
    requestBytes: number,
    responseBytes: number,
  ): void {
    // Three Map lookups by strings the caller already holds, then a number: nothing is built
    // per request once a label set has been seen.
    let byService = this.requestSeries.get(route);
    if (byService === undefined)
      this.requestSeries.set(route, (byService = new Map<string, Map<number, RequestSeries>>()));
    let byCode = byService.get(service);
    if (byCode === undefined) byService.set(service, (byCode = new Map<number, RequestSeries>()));
    const m = methodIndex(method);
    const code = status >= 100 && status <= 599 ? status : status === 0 ? 0 : -1;
    const key = m * 1000 + code;
    let s = byCode.get(key);
    if (s === undefined) {
      const label = METHOD_LABELS[m]!;
      s = {
        // A status outside 100–599 (an upstream's odd one) is "other": statuses stay a closed set.
        count: counterCell(this.requests, [
          label,
          route,
          service,
          code === -1 ? 'other' : String(code),
        ]),
        duration: histogramCell(this.requestDuration, [label, route, service]),
        requestBytes: histogramCell(this.requestBytes, [route, service]),
        responseBytes: histogramCell(this.responseBytes, [route, service]),
      };
      byCode.set(key, s);
    }
    s.count.inc();
    s.duration.observe(seconds);
    s.requestBytes.observe(requestBytes);
    s.responseBytes.observe(responseBytes);
  }

  /** One upstream call's duration. */
  observeUpstream(service: string, target: string, seconds: number): void {
    let byTarget = this.upstreamSeries.get(service);
    if (byTarget === undefined)
      this.upstreamSeries.set(service, (byTarget = new Map<string, HistogramCell>()));
    let cell = byTarget.get(target);
    if (cell === undefined) {
      cell = histogramCell(this.upstreamDuration, [service, target]);
      byTarget.set(target, cell);
    }
    cell.observe(seconds);
  }

  /** Adds one to a counter's series; the label values in its label order. */
  count(counter: Counter<string>, ...values: string[]): void {
    let children = this.counterSeries.get(counter);
    if (children === undefined) {
      children = new Map();
      this.counterSeries.set(counter, children);
    }
    const key = values.join('\0');
    let child = children.get(key);
    if (child === undefined) {
      child = counterCell(counter, values);
      children.set(key, child);
    }
    child.inc();
  }

  /** A counter's series bound once, for a caller that keeps it (the gateway's per-route recorders). */
  cell(counter: Counter<string>, ...values: string[]): CounterCell {
    return counterCell(counter, values);
  }

  /**
   * Stops reporting: the gauges' sources go, and in a registry that was given the series are
   * removed from it (so a new gateway can register them again). Idempotent.
   */
  close(): void {
    this.targetSources.clear();
    this.circuitSources.clear();
    if (!this.shared) return;
    for (const name of SERIES) this.registry.removeSingleMetric(this.prefix + name);
  }

  /** Targets to report in `upstream_health` and `upstream_in_flight`, read at each scrape; returns the disposer. */
  watchTargets(source: () => Iterable<TargetSample>): () => void {
    this.targetSources.add(source);
    return () => this.targetSources.delete(source);
  }

  /** Circuits to report in `circuit_breaker_state`, read at each scrape; returns the disposer. */
  watchCircuits(source: () => Iterable<CircuitSample>): () => void {
    this.circuitSources.add(source);
    return () => this.circuitSources.delete(source);
  }

  /**
   * Counts any Express app's requests (`app.use(metrics.middleware)`): method, the matched
   * route's pattern (`req.route.path`, as written in the code: never the client's path, so a
   * router mounted at `/users/:id` adds no series per user; `route=""` when none matched),
   * status, duration, and the bodies' Content-Length (a streamed body without one counts 0).
   * `service` is "".
   */
  readonly middleware = (req: IncomingMessage, res: ServerResponse, next: () => void): void => {
    const start = performance.now();
    res.once('close', () => {
      // The route's own pattern only: a mount's `baseUrl` is the path as the client sent it
      // (its parameters' values, its letter case), which would make a series per client path.
      const r = req as IncomingMessage & {
        route?: { path?: string | RegExp | (string | RegExp)[] };
      };
      const route = r.route?.path === undefined ? '' : String(r.route.path);
      this.observeRequest(
        req.method,
        route,
        '',
        res.headersSent ? res.statusCode : 0,
        (performance.now() - start) / 1000,
        Number(req.headers['content-length']) || 0,
        Number(res.getHeader('content-length')) || 0,
      );
    });
    next();
  };

  /**
   * Serves the registry in the Prometheus text format (GET and HEAD; anything else 405), to
   * mount anywhere: `internal.get('/metrics', metrics.handler)`.
   */
  readonly handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return sendProblem(req, res, METHOD_NOT_ALLOWED);
    }
    res.writeHead(200, {
      'content-type': this.registry.contentType,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    void this.stream(res);
  };

  /** Writes the slices to `res`; a failure part-way cuts the response off (its head is sent). */
  private async stream(res: ServerResponse): Promise<void> {
    try {
      for await (const piece of this.slices()) {
        if (res.destroyed) return;
        res.write(piece);
      }
      res.end();
    } catch {
      res.destroy();
    }
  }

  /**
   * The registry in the Prometheus text format, as `registry.metrics()` writes it, without
   * blocking the event loop for long: the large series (requests, histograms) are written a
   * slice at a time, the event loop turning between slices, so requests in flight keep moving
   * while thousands of series are scraped (see bench/observability.js scrape).
   */
  async scrape(): Promise<string> {
    const pieces: string[] = [];
    for await (const piece of this.slices()) pieces.push(piece);
    return pieces.join('');
  }

  /**
   * The text format a slice at a time (each at most {@link SLICE} series), the event loop
   * turning between slices: the endpoint writes each to the socket as it comes, so neither the
   * writing nor one large string blocks the loop for long.
   */
  async *slices(): AsyncGenerator<string> {
    const registry = this.registry as Registry & { _defaultLabels?: object };
    const plain =
      registry.contentType === Registry.PROMETHEUS_CONTENT_TYPE &&
      Object.keys(registry._defaultLabels ?? {}).length === 0;
    let first = true;
    for (const metric of registry.getMetricsAsArray()) {
      const gap = first ? '' : '\n\n';
      first = false;
      const own = plain ? this.sliced.get(metric) : undefined;
      const map = (metric as unknown as { hashMap?: Record<string, unknown> }).hashMap;
      if (own === undefined || map === undefined || typeof map !== 'object') {
        yield gap + (await registry.getSingleMetricAsString(metric.name));
        await turn();
        continue;
      }
      const { name, help, type } = metric as unknown as {
        name: string;
        help: string;
        type: string;
      };
      let lines = [`${gap}# HELP ${name} ${escapeText(help)}`, `# TYPE ${name} ${type}`];
      let left = SLICE;
      for (const entry of Object.values(map)) {
        if (own === 'histogram')
          writeHistogram(lines, name, metric as unknown as HistogramLike, entry as HistogramEntry);
        else writeCounter(lines, name, entry as CounterEntry);
        if (--left === 0) {
          left = SLICE;
          yield lines.join('\n');
          // The next slice starts with the newline that ends this one's last line.
          lines = [''];
          await turn();
        }
      }
      yield lines.join('\n');
    }
    yield '\n';
  }

  /** Requests, errors and latency percentiles per route and per service, read from the series. */
  async requestStats(): Promise<{
    routes: Record<string, SeriesStats>;
    services: Record<string, SeriesStats>;
  }> {
    const [counts, durations] = await Promise.all([
      this.requests.get(),
      this.requestDuration.get(),
    ]);
    const routes = new Map<string, Tally>();
    const services = new Map<string, Tally>();
    const tally = (map: Map<string, Tally>, key: string) => {
      let t = map.get(key);
      if (t === undefined) map.set(key, (t = { requests: 0, errors: 0, buckets: new Map() }));
      return t;
    };
    for (const { labels, value } of counts.values) {
      const status = Number(labels.status);
      const error = status >= 500 || status === 0;
      for (const t of targetsOf(labels, routes, services, tally)) {
        t.requests += value;
        if (error) t.errors += value;
      }
    }
    for (const { labels, value, metricName } of durations.values) {
      if (!metricName?.endsWith('_bucket')) continue;
      const bound = (labels as { le?: string | number }).le;
      const le = bound === '+Inf' ? Infinity : Number(bound);
      for (const t of targetsOf(labels, routes, services, tally)) {
        t.buckets.set(le, (t.buckets.get(le) ?? 0) + value);
      }
    }
    return { routes: statsOf(routes), services: statsOf(services) };
  }
}

/** Series written between two turns of the event loop while scraping. */
const SLICE = 500;

type SlicedMetric = { readonly name: string };
interface CounterEntry {
  value: number;
  labels: Record<string, string | number>;
}
interface HistogramEntry {
  labels: Record<string, string | number>;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}
interface HistogramLike {
  readonly upperBounds: readonly number[];
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** prom-client's escaping: backslashes and newlines (HELP text and label values), and quotes in label values. */
function escapeText(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A series' labels as prom-client writes them (`k="v",…`), built once per series and kept. */
const LABEL_TEXT = new WeakMap<object, string>();

function labelBody(labels: Record<string, string | number>): string {
  let text = LABEL_TEXT.get(labels);
  if (text === undefined) {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(labels)) {
      parts.push(`${k}="${typeof v === 'string' ? escapeText(v).replace(/"/g, '\\"') : v}"`);
    }
    text = parts.join(',');
    LABEL_TEXT.set(labels, text);
  }
  return text;
}

/** prom-client's number text: Nan, +Inf, -Inf, else the number. */
function valueText(v: number): string {
  if (Number.isNaN(v)) return 'Nan';
  if (!Number.isFinite(v)) return v < 0 ? '-Inf' : '+Inf';
  return `${v}`;
}

function writeCounter(lines: string[], name: string, e: CounterEntry): void {
  const body = labelBody(e.labels);
  lines.push(`${name}${body === '' ? '' : `{${body}}`} ${valueText(e.value)}`);
}

function writeHistogram(lines: string[], name: string, h: HistogramLike, e: HistogramEntry): void {
  const body = labelBody(e.labels);
  // prom-client writes `le` first.
  const bucket = `${name}_bucket{le="`;
  const rest = body === '' ? '"}' : `",${body}}`;
  const plain = body === '' ? '' : `{${body}}`;
  let cumulative = 0;
  for (const bound of h.upperBounds) {
    cumulative += e.bucketValues[bound] ?? 0;
    lines.push(`${bucket}${bound}${rest} ${valueText(cumulative)}`);
  }
  lines.push(`${bucket}+Inf${rest} ${valueText(e.count)}`);
  lines.push(`${name}_sum${plain} ${valueText(e.sum)}`);
  lines.push(`${name}_count${plain} ${valueText(e.count)}`);
}

interface Tally {
  requests: number;
  errors: number;
  /** Cumulative count by upper bound. */
  buckets: Map<number, number>;
}

function targetsOf(
  labels: LabelValues<string>,
  routes: Map<string, Tally>,
  services: Map<string, Tally>,
  tally: (map: Map<string, Tally>, key: string) => Tally,
): Tally[] {
  const out: Tally[] = [];
  const route = labels.route;
  const service = labels.service;
  if (typeof route === 'string' && route !== '') out.push(tally(routes, route));
  if (typeof service === 'string' && service !== '') out.push(tally(services, service));
  return out;
}

function statsOf(map: Map<string, Tally>): Record<string, SeriesStats> {
  const out: Record<string, SeriesStats> = {};
  for (const [name, t] of map) {
    const bounds = [...t.buckets.entries()].sort((a, b) => a[0] - b[0]);
    const total = bounds.length === 0 ? 0 : bounds[bounds.length - 1]![1];
    out[name] = {
      requests: t.requests,
      errors: t.errors,
      latencyMs:
        total === 0
          ? null
          : {
              p50: quantile(bounds, total, 0.5),
              p90: quantile(bounds, total, 0.9),
              p99: quantile(bounds, total, 0.99),
            },
    };
  }
  return out;
}

/** A quantile in ms from cumulative buckets, interpolated within its bucket as Prometheus's histogram_quantile does. */
export function quantile(bounds: readonly [number, number][], total: number, q: number): number {
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, cumulative] of bounds) {
    if (cumulative >= rank) {
      // In the +Inf bucket, the largest finite bound is the best estimate there is.
      if (le === Infinity) return Math.round(lower * 10000) / 10;
      const inBucket = cumulative - below;
      const seconds = inBucket === 0 ? le : lower + ((le - lower) * (rank - below)) / inBucket;
      return Math.round(seconds * 10000) / 10;
    }
    lower = le;
    below = cumulative;
  }
  return Math.round(lower * 10000) / 10;
}

/**
 * Prometheus metrics, usable alone: `const metrics = createMetrics()`, then
 * `app.use(metrics.middleware)` and `app.get('/metrics', metrics.handler)`. In a registry of
 * its own unless `registry` is given. Throws a ConfigError naming the field for bad options.
 */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  return new Metrics(options, 'metrics');
}
