import {
  array,
  parseTarget,
  object,
  oneOf,
  record,
  type Check,
  type Logger,
  type TargetInput,
} from '@turnpike/core';
import type { StrategyName } from '@turnpike/balancer';
import {
  checkRouterConfig,
  proxySettingsShape,
  routerShape,
  type ProxySettings,
  type RouteOptions,
  type TrustProxy,
} from '@turnpike/router';

/** One service behind the gateway. */
export interface ServiceConfig extends ProxySettings {
  /** Upstream targets: URLs, or `{ url, weight }`. At least one. Required. */
  targets: readonly TargetInput[];
  /** Balancing strategy. Default `'round-robin'`. */
  balancer?: StrategyName;
}

/** The whole gateway configuration; see DESIGN.md. */
export interface GatewayConfig {
  /** Services by name. Required. */
  services: Readonly<Record<string, ServiceConfig>>;
  /** Routes, relative to where the gateway is mounted. Required. */
  routes: readonly RouteOptions[];
  /** Trusted proxies in front of the gateway: false, a hop count, or addresses/CIDRs. Default false. */
  trustProxy?: TrustProxy;
  /** Headers only the gateway may set upstream. Default `['x-user-id', 'x-user-roles', 'x-consumer-id']`. */
  identityHeaders?: readonly string[];
  /** Default largest request body in bytes, or false. Default 10485760 (10 MiB). */
  bodyLimit?: number | false;
  /** Where the gateway logs. Default: silent. */
  logger?: Logger;
}

const serviceConfig = object<ServiceConfig>(
  {
    ...proxySettingsShape,
    targets: array((v, p) => (parseTarget(v, p), v as TargetInput), { min: 1 }),
    balancer: oneOf(['round-robin'] as const),
  },
  ['targets'],
);

const gatewayConfig: Check<GatewayConfig> = object<GatewayConfig>(
  {
    services: record(serviceConfig, {
      keyPattern: /^[A-Za-z0-9_.-]+$/,
      keyExpected: 'a service name of [A-Za-z0-9_.-]',
      minSize: 1,
    }),
    routes: routerShape.routes,
    trustProxy: routerShape.trustProxy,
    identityHeaders: routerShape.identityHeaders,
    bodyLimit: routerShape.bodyLimit,
    logger: routerShape.logger,
  },
  ['services', 'routes'],
);

/**
 * Validates a gateway config. Throws a ConfigError whose message names the field path, the
 * value and what was expected. Returns a normalised copy; the input is never modified.
 */
export function validateConfig(config: unknown): GatewayConfig {
  const parsed = gatewayConfig(config, '');
  checkRouterConfig(parsed);
  return parsed;
}
