/** createGateway(config): the gateway as an Express router, with attach() (the direct lane too), listen() and close(). */
export { createGateway } from './gateway';
export type { Gateway, AttachOptions, GatewayStats, RouteStats, ServiceStats } from './gateway';
export type { GatewayMetricsConfig, AuthResult } from './telemetry';
/** Config validation, usable before creating anything (e.g. in a CI check of a config file). */
export { validateConfig } from './config';
export type { GatewayConfig, HealthOptions, ServiceConfig } from './config';
export type { GatewayAuthConfig, IdentityHeaders, RouteAuth } from './auth';
export type { CorsConfig, HelmetConfig, RouteCompress } from './edge';
/** The breaker and bulkhead keys of a service. */
export type { ServiceBreakerConfig, ServiceBulkheadConfig } from './guard';
/** The JSON of the health endpoints. */
export type {
  LiveBody,
  ReadyBody,
  ServiceHealth,
  ServiceHealthBody,
  ServicesHealthBody,
} from './health';
/** The request id step, usable alone (it lives in @turnpike/metrics). */
export { assignRequestId } from '@turnpike/metrics';
export type {
  Metrics,
  MetricsOptions,
  AccessLogOptions,
  AccessLogEntry,
  TracingOptions,
  TraceContext,
  SeriesStats,
} from '@turnpike/metrics';
/** The pieces, re-exported so that one install gives everything. */
export {
  GatewayError,
  isGatewayError,
  ConfigError,
  isConfigError,
  sendProblem,
} from '@turnpike/core';
export type { Logger } from '@turnpike/core';
export type {
  Outcome,
  OutcomeKind,
  OutcomeListener,
  RouteOptions,
  HeaderTransform,
  TrustProxy,
  ProxySettings,
  AgentOptions,
  RetryOptions,
  HedgeOptions,
  RetryEvent,
  HedgeEvent,
} from '@turnpike/router';
export type {
  Balancer,
  StrategyOption,
  HashKey,
  HealthCheckOptions,
  OutlierOptions,
  HealthChangeEvent,
  EjectionEvent,
  ReadmissionEvent,
  TargetStatus,
} from '@turnpike/balancer';
export type {
  CircuitBreaker,
  Bulkhead,
  CircuitState,
  CircuitStateName,
  StateChangeEvent,
  StateChangeReason,
  Fallback,
  FallbackHandler,
  FallbackReason,
  FallbackResponse,
} from '@turnpike/breaker';
