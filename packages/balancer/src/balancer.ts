import type { IncomingMessage } from 'node:http';
import {
  ConfigError,
  array,
  object,
  parseTarget,
  string,
  type Check,
  type Target,
  type TargetInput,
} from '@turnpike/core';
import { strategies, type StrategyFactory, type StrategyName } from './strategy';

/** Options of {@link createBalancer}. */
export interface BalancerOptions {
  /** Service name, used in messages. Default `'service'`. */
  name?: string;
  /** The upstream targets; at least one. */
  targets: readonly TargetInput[];
  /** A strategy name or factory. Default `'round-robin'`. */
  strategy?: StrategyName | StrategyFactory;
}

/** A service's pool of targets and the strategy that picks among them. */
export interface Balancer {
  readonly name: string;
  readonly targets: readonly Target[];
  /** The target for this request, or undefined when none is available. */
  readonly pick: (req: IncomingMessage) => Target | undefined;
  /** Frees timers; later strategies and health checks keep state. */
  close(): void;
}

const targetList = array(parseTarget, { min: 1 });

// Shapes only; targets and strategy are parsed below with their own paths.
const balancerOptions: Check<BalancerOptions> = object<BalancerOptions>(
  {
    name: string({ minLength: 1, expected: 'a non-empty service name' }),
    targets: (v) => v as BalancerOptions['targets'],
    strategy: (v) => v as BalancerOptions['strategy'],
  },
  ['targets'],
);

/** Parses and checks a target list; throws a ConfigError naming `path`. */
export function parseTargets(value: unknown, path: string): Target[] {
  return targetList(value, path);
}

/**
 * Creates a balancer. Usable alone, e.g. as http-proxy-middleware's `router`:
 * `createProxyMiddleware({ router: (req) => balancer.pick(req)?.url })`.
 */
export function createBalancer(options: BalancerOptions, path = 'balancer'): Balancer {
  const parsed = balancerOptions(options, path);
  const name = parsed.name ?? 'service';
  const targets = Object.freeze(parseTargets(parsed.targets, `${path}.targets`));
  const factory = resolveStrategy(parsed.strategy, `${path}.strategy`);
  const strategy = factory(targets);
  if (typeof strategy?.pick !== 'function') {
    throw new ConfigError(`${path}.strategy`, 'a factory returning { pick(req) }', strategy);
  }
  return {
    name,
    targets,
    pick: function pick(req) {
      return strategy.pick(req);
    },
    close() {},
  };
}

function resolveStrategy(value: unknown, path: string): StrategyFactory {
  if (value === undefined) return strategies['round-robin'];
  if (typeof value === 'function') return value as StrategyFactory;
  if (typeof value === 'string' && Object.prototype.hasOwnProperty.call(strategies, value)) {
    return strategies[value as StrategyName];
  }
  throw new ConfigError(
    path,
    `a strategy (one of ${Object.keys(strategies).join(', ')}) or a factory function`,
    value,
  );
}
