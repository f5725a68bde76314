/** Prometheus metrics on prom-client: createMetrics() → { middleware, handler, registry }, and what the gateway feeds. */
export {
  createMetrics,
  metricsOptionsCheck,
  Metrics,
  DEFAULT_BUCKETS,
  BYTE_BUCKETS,
  quantile,
} from './prometheus';
export type { MetricsOptions, TargetSample, CircuitSample, SeriesStats } from './prometheus';
export type { CounterCell, HistogramCell } from './cells';
/** The access log: one JSON line per request (winston by default), credentials redacted. */
export {
  createAccessLog,
  accessLogOptionsCheck,
  AccessLog,
  REDACTED_QUERY,
  MAX_LOGGED_PATH,
  queryNameKey,
  defaultAccessLogger,
} from './access-log';
export type { AccessLogOptions, AccessLogEntry } from './access-log';
export { jsonLogger, LineBuffer } from './json-logger';
export type { JsonLoggerOptions } from './json-logger';
/** W3C trace context (`req.trace`, `traceparent` upstream), and OpenTelemetry spans when the API is installed. */
export {
  assignTraceContext,
  traceContext,
  parseTraceparent,
  formatTraceparent,
  newSpanId,
  newTraceId,
  validTracestate,
  MAX_TRACESTATE,
} from './trace';
export type { TraceContext, TracedRequest } from './trace';
export { Tracing, tracingCheck } from './tracing';
export type { TracingOptions, TracedAttempt, TracedEnd } from './tracing';
export type { OtelApi } from './otel';
/** The request id (`req.id`, `X-Request-ID`). */
export { assignRequestId, requestId } from './request-id';
