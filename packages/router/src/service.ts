import type { IncomingMessage } from 'node:http';
import { Pool } from 'undici';
import { GatewayError, parseTarget, type Target, type TargetPicker } from '@turnpike/core';
import { DEFAULTS } from './options';
import { RETRY_DEFAULTS, RetryBudget, compileRetries, type RetryPolicy } from './retry';
import type { ServiceOptions } from './types';

/** Picks a target for one attempt; `tried` lists the targets earlier attempts of this request used. */
export type Pick = (req: IncomingMessage, tried: readonly Target[]) => Target | undefined;

/** A service compiled once: how to pick a target and the connection pool of each target. */
export interface CompiledService {
  readonly name: string;
  readonly pick: Pick;
  /** The picker that hears of each attempt (a balancer), if the target source is one. */
  readonly picker: TargetPicker | undefined;
  /** Retries: the default (connect failures once), the configured policy, or none. */
  readonly retry: RetryPolicy | undefined;
  /** What retries and hedges draw on. */
  readonly budget: RetryBudget;
  /** The 503 when no target is usable, with the picker's Retry-After. */
  noTarget(): GatewayError;
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly preserveHost: boolean;
  /** The pool of a target, created on first use. */
  poolFor(target: Target): Pool;
  /** Closes every pool: `graceful` lets requests in flight finish, otherwise sockets are destroyed. */
  close(graceful: boolean): Promise<void>;
}

/** Compiles one service: its target source and the settings its pools get. */
export function compileService(name: string, s: ServiceOptions): CompiledService {
  const poolOptions: Pool.Options = {
    connections: s.agent?.maxSockets ?? DEFAULTS.maxSockets,
    keepAliveTimeout: s.agent?.freeSocketTimeoutMs ?? DEFAULTS.freeSocketTimeoutMs,
    // An upstream's own Keep-Alive: timeout= may shorten it, never lengthen it.
    keepAliveMaxTimeout: s.agent?.freeSocketTimeoutMs ?? DEFAULTS.freeSocketTimeoutMs,
    connect: { timeout: s.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs },
    // The router's own deadline bounds the whole exchange; undici's would only race it.
    headersTimeout: 0,
    bodyTimeout: 0,
    pipelining: 1,
    strictContentLength: true,
  };
  const byTarget = new WeakMap<Target, Pool>();
  const byOrigin = new Map<string, Pool>();
  let closed = false;

  let pick: Pick;
  let picker: TargetPicker | undefined;
  const source = s.target;
  if (typeof source === 'string') {
    const fixed = parseTarget(source, `services.${name}.target`);
    pick = function fixedTarget() {
      return fixed;
    };
  } else if (typeof source === 'function') {
    pick = source;
  } else {
    picker = source;
    pick = source.pick.bind(source);
  }
  const retry = compileRetries(s.retries);
  // With retries off, hedges still draw on a budget: the default one.
  const budget =
    retry?.budget ??
    new RetryBudget(RETRY_DEFAULTS.ratio, RETRY_DEFAULTS.minPerSecond, RETRY_DEFAULTS.windowMs);
  const noTargets = new Map<number, GatewayError>();
  const retryAfter = picker?.retryAfter?.bind(picker);

  return {
    name,
    pick,
    picker,
    retry,
    budget,
    noTarget() {
      let seconds = 1;
      try {
        const s = retryAfter?.() ?? 1;
        // A header value, whatever the picker says: whole seconds from 1 to a day.
        if (Number.isFinite(s)) seconds = Math.min(86_400, Math.max(1, Math.ceil(s)));
      } catch {
        // A picker's retryAfter() that throws: the default second.
      }
      let err = noTargets.get(seconds);
      if (err === undefined) {
        err = new GatewayError('ERR_TURNPIKE_NO_TARGET', {
          headers: { 'retry-after': String(seconds) },
        });
        if (noTargets.size < 64) noTargets.set(seconds, err);
      }
      return err;
    },
    timeoutMs: s.timeoutMs ?? DEFAULTS.timeoutMs,
    connectTimeoutMs: s.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    preserveHost: s.preserveHost ?? DEFAULTS.preserveHost,
    poolFor(target) {
      let pool = byTarget.get(target);
      if (pool !== undefined) return pool;
      // A target function may build new objects for the same origin: one pool per origin.
      const origin = `${target.protocol}//${target.host}`;
      pool = byOrigin.get(origin);
      if (pool === undefined) {
        if (closed) throw new Error('Turnpike: the service is closed');
        pool = new Pool(origin, poolOptions);
        byOrigin.set(origin, pool);
      }
      byTarget.set(target, pool);
      return pool;
    },
    async close(graceful) {
      closed = true;
      const pools = [...byOrigin.values()];
      byOrigin.clear();
      await Promise.all(pools.map((p) => (graceful ? p.close() : p.destroy()).catch(() => {})));
    },
  };
}
