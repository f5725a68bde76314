/** createBalancer(): a service's targets and the strategy that picks one per request. */
export { createBalancer, parseTargets } from './balancer';
export type { Balancer, BalancerOptions } from './balancer';
/** Target parsing lives in core; re-exported for users of the balancer alone. */
export { parseTarget } from '@turnpike/core';
export type { Target, TargetInput } from '@turnpike/core';
/** The strategy seam and the round-robin strategy. */
export { roundRobin, strategies } from './strategy';
export type { Strategy, StrategyFactory, StrategyName } from './strategy';
