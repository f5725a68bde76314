/** createRouter(): route table, path policy, header hygiene and the forwarder, compiled once. */
export { createRouter, createUpgradeResponse } from './router';
export type { TurnpikeRouter } from './router';
/** Options and their checks; the gateway validates its config with the same shapes. */
export {
  DEFAULTS,
  parseRouterOptions,
  proxySettingsShape,
  routerShape,
  routesCheck,
  checkRouteServices,
  checkRouterConfig,
} from './options';
export type { ParsedRouterOptions } from './options';
/** Outcomes: how each request ended, one typed report per request. */
export { isUpstreamFailure } from './outcome';
export type { AttemptInfo, AttemptPhase, Outcome, OutcomeKind, OutcomeListener } from './outcome';
/** The response tap: a stage sees the head the client gets and may take the body (a cache). */
export { tapResponse } from './tap';
export type { ResponseTap, TapSink, TappedHead } from './tap';
/** Fallbacks: a stage answers the request's upstream failure itself, and marks its outcome. */
export { answerFailure, markFallback } from './fallback';
export type { FailureAnswer } from './fallback';
/** The path policy, usable alone: the normalised path, or undefined when refused. */
export { checkPath } from './path-policy';
/** Header hygiene building blocks, and the client address hygiene computed. */
export { HOP_BY_HOP, canonicalName, spellings, compileTrust, clientIp, validHost } from './headers';
/** Upstream failure → outcome kind and gateway error: the one table. */
export { upstreamError, upstreamFailure } from './upstream-errors';
export type { UpstreamFailure } from './upstream-errors';
export type {
  AgentOptions,
  HeaderTransform,
  HedgeEvent,
  AttemptEvent,
  UnroutedEvent,
  HedgeOptions,
  Middleware,
  ProxySettings,
  RetryEvent,
  RetryOptions,
  RouteInfo,
  RouteOptions,
  RouterExtensions,
  RouterOptions,
  ServiceOptions,
  TargetSource,
  TrustProxy,
} from './types';
