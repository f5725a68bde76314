import type { IncomingMessage } from 'node:http';
import { ConfigError } from '@turnpike/core';
import { HashRing, hash32 } from './ring';
import type { HashKey, Member, StrategyFactory, StrategyName } from './types';

export type { Strategy, StrategyFactory, StrategyName } from './types';

type Usable = (member: Member) => boolean;

/** Round-robin: each usable member in turn (a cursor over the list), weights ignored. */
export const roundRobin: StrategyFactory = () => {
  let next = 0;
  return {
    pick(members, usable) {
      const n = members.length;
      if (next >= n) next = 0;
      for (let i = 0, at = next; i < n; i++, at = at + 1 === n ? 0 : at + 1) {
        const member = members[at]!;
        if (usable(member)) {
          next = at + 1 === n ? 0 : at + 1;
          return member;
        }
      }
      return undefined;
    },
  };
};

/**
 * nginx's smooth weighted round-robin: weights 5, 1, 1 give a a b a c a a, spread out rather
 * than in bursts. Each member's running "current weight" lives in `member.slot`.
 */
export const weightedRoundRobin: StrategyFactory = (initial) => {
  // Start every member from 0; members added later come from the balancer with slot 0.
  for (const member of initial) member.slot = 0;
  return {
    pick(members, usable) {
      let total = 0;
      let best: Member | undefined;
      for (const member of members) {
        if (!usable(member)) continue;
        member.slot += member.weight;
        total += member.weight;
        if (best === undefined || member.slot > best.slot) best = member;
      }
      if (best !== undefined) best.slot -= total;
      return best;
    },
  };
};

/** Least connections: the usable member with the fewest attempts in flight; ties in turn. */
export const leastConnections: StrategyFactory = () => {
  let start = 0;
  return {
    pick(members, usable) {
      const n = members.length;
      if (n === 0) return undefined;
      if (start >= n) start = 0;
      let best: Member | undefined;
      for (let i = 0, at = start; i < n; i++, at = at + 1 === n ? 0 : at + 1) {
        const member = members[at]!;
        if (usable(member) && (best === undefined || member.inFlight < best.inFlight)) {
          best = member;
        }
      }
      start = start + 1 === n ? 0 : start + 1;
      return best;
    },
  };
};

/** Random draws before p2c / random fall back to a scan (few usable members). */
const DRAWS = 4;

/**
 * A uniformly random usable member other than `except`: a few random draws (rejection
 * sampling, uniform), then an exact scan that picks the k-th of those left (also uniform).
 */
function randomUsable(
  members: readonly Member[],
  usable: Usable,
  except: Member | undefined,
): Member | undefined {
  const n = members.length;
  for (let i = 0; i < DRAWS; i++) {
    const member = members[Math.floor(Math.random() * n)];
    if (member !== undefined && member !== except && usable(member)) return member;
  }
  let count = 0;
  for (const member of members) if (member !== except && usable(member)) count++;
  if (count === 0) return undefined;
  let k = Math.floor(Math.random() * count);
  for (const member of members) {
    if (member !== except && usable(member) && k-- === 0) return member;
  }
  return undefined;
}

/**
 * Power of two choices: two distinct usable members at random, the cheaper one wins. Cost is
 * `(inFlight + 1) × latency`, where a member without latency samples (latencyMs 0) borrows
 * the other's latency (1 when neither has any): with no samples this compares in-flight
 * counts, and a new target is neither flooded nor starved before its first sample.
 */
export const p2c: StrategyFactory = () => ({
  pick(members, usable) {
    const a = randomUsable(members, usable, undefined);
    if (a === undefined) return undefined;
    const b = randomUsable(members, usable, a);
    if (b === undefined) return a;
    const costA = (a.inFlight + 1) * (a.latencyMs || b.latencyMs || 1);
    const costB = (b.inFlight + 1) * (b.latencyMs || a.latencyMs || 1);
    return costB < costA ? b : a;
  },
});

/** Weighted random: each usable member with probability proportional to its weight. */
export const random: StrategyFactory = () => ({
  pick(members, usable) {
    let total = 0;
    for (const member of members) if (usable(member)) total += member.weight;
    if (total <= 0) {
      // Usable members all of weight 0 (the balancer's usable() normally excludes them).
      for (const member of members) if (usable(member)) return member;
      return undefined;
    }
    let r = Math.random() * total;
    let last: Member | undefined;
    for (const member of members) {
      if (!usable(member)) continue;
      last = member;
      r -= member.weight;
      if (r < 0) return member;
    }
    return last; // rounding
  },
});

/**
 * A consistent-hash strategy over the key `keyOf` reads from a request. A key maps to the
 * ring's next point clockwise; if that member is not usable, the walk goes on clockwise to the
 * next usable member (so the key comes back when it is usable again). A request without the
 * key (or an empty one) falls back to round-robin among usable members.
 */
function ringStrategy(keyOf: (req: IncomingMessage) => string | undefined): StrategyFactory {
  return (initial) => {
    const ring = new HashRing(initial);
    const fallback = roundRobin(initial);
    return {
      pick(members, usable, req) {
        const key = keyOf(req);
        if (key === undefined || key === '') return fallback.pick(members, usable, req);
        return ring.pick(members, usable, hash32(key)) ?? fallback.pick(members, usable, req);
      },
      update(members) {
        ring.build(members);
      },
    };
  };
}

/** The client IP: `req.clientIp` as the router sets it, else the socket's peer address. */
function clientIpOf(req: IncomingMessage): string | undefined {
  return (req as { clientIp?: string }).clientIp ?? req.socket?.remoteAddress;
}

/**
 * IP hash: a consistent-hash ring keyed by the client IP, so a client sticks to one target
 * and a change of targets moves only about 1/n of the clients.
 */
export const ipHash: StrategyFactory = ringStrategy(clientIpOf);

/** An HTTP token (RFC 9110), as header and cookie names must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The value of cookie `name` in a Cookie header, by a scan (no map of every cookie). */
function cookieValue(header: string, name: string): string | undefined {
  const len = header.length;
  let at = 0;
  while (at < len) {
    while (at < len && (header.charCodeAt(at) === 0x20 || header.charCodeAt(at) === 0x09)) at++;
    let end = header.indexOf(';', at);
    if (end === -1) end = len;
    if (
      end - at > name.length &&
      header.charCodeAt(at + name.length) === 0x3d /* = */ &&
      header.startsWith(name, at)
    ) {
      let from = at + name.length + 1;
      let to = end;
      while (
        to > from &&
        (header.charCodeAt(to - 1) === 0x20 || header.charCodeAt(to - 1) === 0x09)
      )
        to--;
      if (
        to - from >= 2 &&
        header.charCodeAt(from) === 0x22 &&
        header.charCodeAt(to - 1) === 0x22
      ) {
        from++;
        to--;
      }
      return header.slice(from, to);
    }
    at = end + 1;
  }
  return undefined;
}

/** The first value of query parameter `name` in a request URL, decoded (raw if malformed). */
function queryValue(url: string, name: string): string | undefined {
  const q = url.indexOf('?');
  if (q === -1) return undefined;
  let len = url.indexOf('#', q);
  if (len === -1) len = url.length;
  let at = q + 1;
  while (at < len) {
    let end = url.indexOf('&', at);
    if (end === -1 || end > len) end = len;
    const nameEnd = at + name.length;
    if (
      nameEnd <= end &&
      url.startsWith(name, at) &&
      (nameEnd === end || url.charCodeAt(nameEnd) === 0x3d) /* = */
    ) {
      if (nameEnd === end) return '';
      let raw = url.slice(nameEnd + 1, end);
      if (raw.includes('+')) raw = raw.replace(/\+/g, ' ');
      if (!raw.includes('%')) return raw;
      try {
        return decodeURIComponent(raw);
      } catch {
        return raw;
      }
    }
    at = end + 1;
  }
  return undefined;
}

const HASH_EXPECTED = 'exactly one of { header }, { cookie } or { query }';

/**
 * A consistent-hash strategy keyed by one request header, cookie or query parameter (e.g.
 * `{ header: 'x-user-id' }`), checked here so that a typo fails at start-up, naming
 * `${path}.hash…`. Header names are lower-cased (as Node stores them).
 */
export function hashStrategy(key: HashKey, path: string): StrategyFactory {
  const at = `${path}.hash`;
  if (typeof key !== 'object' || key === null || Array.isArray(key)) {
    throw new ConfigError(at, HASH_EXPECTED, key, `{ hash: { header: 'x-user-id' } }`);
  }
  const given: string[] = [];
  for (const name of Object.keys(key)) {
    if (name !== 'header' && name !== 'cookie' && name !== 'query') {
      throw new ConfigError(`${at}.${name}`, 'a known key (one of header, cookie, query)', name);
    }
    if ((key as Record<string, unknown>)[name] !== undefined) given.push(name);
  }
  if (given.length !== 1) {
    throw new ConfigError(at, HASH_EXPECTED, key, `{ hash: { cookie: 'session' } }`);
  }
  const kind = given[0] as keyof HashKey;
  const value: unknown = key[kind];
  if (typeof value !== 'string' || value === '') {
    throw new ConfigError(`${at}.${kind}`, `a non-empty ${kind} name`, value);
  }
  if (kind === 'header') {
    if (!TOKEN.test(value)) throw new ConfigError(`${at}.header`, 'an HTTP header name', value);
    const header = value.toLowerCase();
    return ringStrategy((req) => {
      const v = req.headers[header];
      return typeof v === 'string' ? v : v?.[0];
    });
  }
  if (kind === 'cookie') {
    if (!TOKEN.test(value)) throw new ConfigError(`${at}.cookie`, 'a cookie name (a token)', value);
    return ringStrategy((req) => {
      const header = req.headers.cookie;
      return typeof header === 'string' ? cookieValue(header, value) : undefined;
    });
  }
  if (/[&=#?\s]/.test(value)) {
    throw new ConfigError(`${at}.query`, 'a query parameter name without & = # ? or spaces', value);
  }
  return ringStrategy((req) => (req.url === undefined ? undefined : queryValue(req.url, value)));
}

/** The strategies that can be named in a config. */
export const strategies: Readonly<Record<StrategyName, StrategyFactory>> = Object.freeze({
  'round-robin': roundRobin,
  'weighted-round-robin': weightedRoundRobin,
  'least-connections': leastConnections,
  p2c,
  random,
  'ip-hash': ipHash,
});

/**
 * A service's `strategy` option as a factory: undefined (round-robin), a name,
 * `{ hash: { header | cookie | query } }`, or the user's own factory. Anything else is a
 * ConfigError at `path` that lists what is accepted.
 */
export function resolveStrategy(value: unknown, path: string): StrategyFactory {
  if (value === undefined) return roundRobin;
  if (typeof value === 'function') return value as StrategyFactory;
  if (typeof value === 'string' && Object.prototype.hasOwnProperty.call(strategies, value)) {
    return strategies[value as StrategyName];
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && 'hash' in value) {
    for (const name of Object.keys(value)) {
      if (name !== 'hash') throw new ConfigError(`${path}.${name}`, 'a known key (hash)', name);
    }
    return hashStrategy((value as { hash: HashKey }).hash, path);
  }
  throw new ConfigError(
    path,
    `a strategy (one of ${Object.keys(strategies)
      .map((name) => JSON.stringify(name))
      .join(', ')}), { hash: { header | cookie | query } } or a factory function`,
    value,
    `'least-connections'`,
  );
}
