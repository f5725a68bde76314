/** createRouter(): route table, path policy, header hygiene and the proxy, compiled once. */
export { createRouter, createUpgradeResponse } from './router';
export type { TurnpikeRouter } from './router';
/** Options and their checks; the gateway validates its config with the same shapes. */
export {
  DEFAULTS,
  parseRouterOptions,
  proxySettingsShape,
  routerShape,
  checkRouteServices,
  checkRouterConfig,
} from './options';
export type { ParsedRouterOptions } from './options';
/** The path policy, usable alone: the normalised path, or undefined when refused. */
export { checkPath } from './path-policy';
/** Header hygiene building blocks. */
export { HOP_BY_HOP, canonicalName, spellings, compileTrust } from './headers';
/** Upstream failure → gateway error: the one table. */
export { upstreamError, CONNECT_TIMEOUT } from './upstream-errors';
export type {
  AgentOptions,
  HeaderTransform,
  Middleware,
  ProxySettings,
  RouteInfo,
  RouteOptions,
  RouterOptions,
  ServiceOptions,
  TargetSource,
  TrustProxy,
} from './types';
