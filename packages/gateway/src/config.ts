import { object, oneOf, record, type Check, type TargetInput } from '@turnpike/core';
import { parseTargets, strategies, type StrategyName } from '@turnpike/balancer';
import {
  checkRouterConfig,
  proxySettingsShape,
  routerShape,
  type ProxySettings,
  type RouterOptions,
} from '@turnpike/router';

/** One service behind the gateway. */
export interface ServiceConfig extends ProxySettings {
  /** Upstream targets: URLs, or `{ url, weight }`. At least one. Required. */
  targets: readonly TargetInput[];
  /** Balancing strategy. Default `'round-robin'`. */
  balancer?: StrategyName;
}

/**
 * The whole gateway configuration; see DESIGN.md. Routes, trustProxy, identityHeaders,
 * stripHeaders, bodyLimit, maxHeaderCount, requestBuffer and logger are the router's
 * options, with its defaults.
 */
export interface GatewayConfig extends Pick<
  RouterOptions,
  | 'routes'
  | 'trustProxy'
  | 'identityHeaders'
  | 'stripHeaders'
  | 'bodyLimit'
  | 'maxHeaderCount'
  | 'requestBuffer'
  | 'logger'
> {
  /** Services by name. Required. */
  services: Readonly<Record<string, ServiceConfig>>;
}

const serviceConfig = object<ServiceConfig>(
  {
    ...proxySettingsShape,
    targets: (v, p) => (parseTargets(v, p), v as readonly TargetInput[]),
    balancer: oneOf(Object.keys(strategies) as StrategyName[]),
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
    stripHeaders: routerShape.stripHeaders,
    bodyLimit: routerShape.bodyLimit,
    maxHeaderCount: routerShape.maxHeaderCount,
    requestBuffer: routerShape.requestBuffer,
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

/**
 * The shape checks of {@link validateConfig} without compiling the routes: createGateway
 * leaves that to createRouter, which compiles each route once and refuses the same.
 */
export function checkConfigShape(config: unknown): GatewayConfig {
  return gatewayConfig(config, '');
}
