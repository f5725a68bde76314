import type { IncomingMessage } from 'node:http';
import type { Target } from '@turnpike/core';

/** Picks the target for one request. */
export interface Strategy {
  pick(req: IncomingMessage): Target | undefined;
}

/** Builds a strategy over a fixed list of targets, once, at start-up. */
export type StrategyFactory = (targets: readonly Target[]) => Strategy;

/** Round-robin: each target in turn, weights ignored. */
export const roundRobin: StrategyFactory = (targets) => {
  let next = 0;
  const count = targets.length;
  return {
    pick() {
      if (count === 0) return undefined;
      const target = targets[next]!;
      next = next + 1 === count ? 0 : next + 1;
      return target;
    },
  };
};

/** The strategies that can be named in a config. */
export const strategies = Object.freeze({ 'round-robin': roundRobin });

/** A strategy name accepted in a config. */
export type StrategyName = keyof typeof strategies;
