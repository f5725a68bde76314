/**
 * createBalancer(): a service's targets, the strategy that picks one per attempt, active
 * health checks and passive health (outlier ejection).
 */
export { createBalancer, parseTargets } from './balancer';
/** The option checks, for a config validator that carries a service's balancing keys. */
export {
  balancerShape,
  healthCheckOption,
  outlierOption,
  strategyOption,
  panicOption,
} from './options';
export type { BalancingOptions, NormalisedHealthCheck, NormalisedOutlier } from './options';
export type {
  Balancer,
  BalancerOptions,
  EjectionEvent,
  HashKey,
  HealthChangeEvent,
  HealthCheckOptions,
  Member,
  OutlierOptions,
  ReadmissionEvent,
  Strategy,
  StrategyFactory,
  StrategyName,
  StrategyOption,
  TargetStatus,
} from './types';
/** Target parsing lives in core; re-exported for users of the balancer alone. */
export { parseTarget } from '@turnpike/core';
export type { Target, TargetInput } from '@turnpike/core';
/** The strategies. */
export {
  strategies,
  resolveStrategy,
  roundRobin,
  weightedRoundRobin,
  leastConnections,
  p2c,
  random,
  ipHash,
  hashStrategy,
} from './strategy';
