import type { IncomingMessage } from 'node:http';
import { ConfigError } from '@turnpike/core';
import { canonicalName, compileTransform, type CompiledTransform } from './headers';
import { splitPath, type TableRoute } from './route-table';
import type { Middleware, RouteInfo, RouteOptions } from './types';

/** Builds the forwarded path (without the query) from the checked path and its segments. */
type Rewrite = (path: string, segments: readonly string[]) => string;

/** A route compiled once at creation. */
export interface CompiledRoute extends TableRoute {
  readonly info: RouteInfo;
  /** The service, or undefined for a `handler` route. */
  readonly service: string | undefined;
  readonly handler: Middleware | undefined;
  readonly websocket: boolean;
  /** Hedged GET and HEAD requests, if set. */
  readonly hedge: CompiledHedge | undefined;
  readonly bodyLimit: number;
  readonly rewrite: Rewrite | undefined;
  readonly requestHeaders: CompiledTransform | undefined;
  readonly responseHeaders: CompiledTransform | undefined;
}

/** A route's hedging, defaults applied. */
export interface CompiledHedge {
  readonly afterMs: number;
  readonly maxHedges: number;
}

/** A host pattern split once: the name (lower case, `*.` kept) and the port when given. */
function splitHost(host: string): { name: string; port: string | undefined } {
  // Bracketed IPv6 literals keep their colons; otherwise the last colon starts the port.
  const colon = host.lastIndexOf(':');
  if (colon === -1 || host.endsWith(']')) return { name: host.toLowerCase(), port: undefined };
  return { name: host.slice(0, colon).toLowerCase(), port: host.slice(colon + 1) };
}

function compileHost(
  host: string | readonly string[] | undefined,
): ((req: IncomingMessage) => boolean) | undefined {
  if (host === undefined) return undefined;
  const patterns = (typeof host === 'string' ? [host] : host).map(splitHost);
  // A pattern without a port matches any port; one with a port only that port.
  const exact = patterns.filter((p) => !p.name.startsWith('*.'));
  const suffixes = patterns
    .filter((p) => p.name.startsWith('*.'))
    .map((p) => ({ suffix: p.name.slice(1), port: p.port }));
  return (req) => {
    const raw = req.headers.host;
    if (raw === undefined) return false;
    // Split as splitHost does, without building an object per request.
    const colon = raw.lastIndexOf(':');
    const split = colon !== -1 && !raw.endsWith(']');
    const name = (split ? raw.slice(0, colon) : raw).toLowerCase();
    const port = split ? raw.slice(colon + 1) : undefined;
    for (const p of exact) {
      if (p.name === name && (p.port === undefined || p.port === port)) return true;
    }
    for (const s of suffixes) {
      if (
        name.length > s.suffix.length &&
        name.endsWith(s.suffix) &&
        (s.port === undefined || s.port === port)
      ) {
        return true;
      }
    }
    return false;
  };
}

/** A RegExp without the g and y flags: those make test() stateful across requests. */
function stateless(re: RegExp): RegExp {
  return re.global || re.sticky ? new RegExp(re.source, re.flags.replace(/[gy]/g, '')) : re;
}

/** Returned by {@link headerOf} when `-` and `_` spellings of one name disagree. */
const AMBIGUOUS = Symbol('ambiguous');

/**
 * A request header as an upstream that reads `_` as `-` sees it (the same folding identity
 * hygiene uses): the one value under any spelling, or AMBIGUOUS when spellings disagree.
 */
function headerOf(req: IncomingMessage, name: string): string | undefined | typeof AMBIGUOUS {
  const h = req.headers;
  let found = h[name];
  for (const key in h) {
    if (key === name || key.indexOf('_') === -1 || canonicalName(key) !== name) continue;
    if (found !== undefined) return AMBIGUOUS;
    found = h[key];
  }
  return typeof found === 'string' ? found : found === undefined ? undefined : AMBIGUOUS;
}

function compileHeaders(
  headers: Readonly<Record<string, string | RegExp>> | undefined,
): ((req: IncomingMessage) => boolean) | undefined {
  if (headers === undefined) return undefined;
  const checks = Object.entries(headers).map(
    ([name, want]) =>
      [canonicalName(name), typeof want === 'string' ? want : stateless(want)] as const,
  );
  return (req) => {
    for (const [name, want] of checks) {
      const got = headerOf(req, name);
      if (typeof got !== 'string') return false;
      if (typeof want === 'string' ? got !== want : !want.test(got)) return false;
    }
    return true;
  };
}

/** Segment index of each named param in a pattern. */
function paramIndexes(pattern: string): Map<string, number> {
  const out = new Map<string, number>();
  splitPath(pattern).forEach((seg, i) => {
    if (seg.startsWith(':')) out.set(seg.slice(1), i);
  });
  return out;
}

function compileStripPrefix(route: RouteOptions, path: string): Rewrite {
  const prefix = route.stripPrefix!;
  const pattern = splitPath(route.path);
  const strip = splitPath(prefix);
  strip.forEach((seg, i) => {
    // Only literal segments: a param or wildcard would strip different text per request.
    if (pattern[i] !== seg || seg.startsWith(':') || seg === '*' || seg === '**') {
      throw new ConfigError(path, `a prefix of the route's literal path "${route.path}"`, prefix);
    }
  });
  const n = prefix.length;
  return (p) => (p.length === n ? '/' : p.slice(n));
}

function compileTemplate(route: RouteOptions, path: string): Rewrite {
  const template = route.rewrite!;
  const params = paramIndexes(route.path);
  const pattern = splitPath(route.path);
  const restAt = pattern[pattern.length - 1] === '**' ? pattern.length - 1 : -1;
  // Parts: literal text, a param's segment index, or the rest.
  const parts: (string | number)[] = [];
  const segments = splitPath(template);
  segments.forEach((seg) => {
    if (seg === '**') {
      if (restAt === -1)
        throw new ConfigError(path, 'a "**" only where the route path ends with "**"', template);
      parts.push(-1);
    } else if (seg.startsWith(':')) {
      const at = params.get(seg.slice(1));
      if (at === undefined) {
        throw new ConfigError(path, `params of the route path "${route.path}"`, template);
      }
      parts.push(at);
    } else if (seg === '*') {
      throw new ConfigError(path, 'literal segments, ":name" params or a final "**"', template);
    } else {
      parts.push(seg);
    }
  });
  return (p, segs) => {
    let out = '';
    for (const part of parts) {
      if (typeof part === 'string') out += `/${part}`;
      else if (part >= 0) out += `/${segs[part]!}`;
      else if (segs.length > restAt) out += `/${segs.slice(restAt).join('/')}`;
    }
    if (out === '') out = '/';
    // Keep a trailing slash the client sent.
    if (p.length > 1 && p.endsWith('/') && !out.endsWith('/')) out += '/';
    return out;
  };
}

/** Compiles one route's matchers, rewrite and header transforms. */
export function compileRoute(
  route: RouteOptions,
  index: number,
  defaultBodyLimit: number | false,
  at = 'routes',
): CompiledRoute {
  const path = `${at}[${index}]`;
  if (route.stripPrefix !== undefined && route.rewrite !== undefined) {
    throw new ConfigError(
      `${path}.rewrite`,
      'either stripPrefix or rewrite, not both',
      route.rewrite,
    );
  }
  let methods: Set<string> | undefined;
  if (route.methods) {
    methods = new Set(route.methods);
    if (methods.has('GET')) methods.add('HEAD');
  }
  const matchHost = compileHost(route.host);
  const matchHeaders = compileHeaders(route.headers);
  const limit = route.bodyLimit ?? defaultBodyLimit;
  const info: RouteInfo = Object.freeze({
    index,
    name: route.name ?? route.path,
    path: route.path,
    service: route.service,
    options: route,
  });
  return {
    info,
    path: route.path,
    service: route.service,
    handler: route.handler,
    websocket: route.websocket === true,
    hedge: route.hedge
      ? Object.freeze({ afterMs: route.hedge.afterMs, maxHedges: route.hedge.maxHedges ?? 1 })
      : undefined,
    bodyLimit: limit === false ? Infinity : limit,
    allow: methods ? [...methods] : undefined, // undefined: every method
    allowsMethod: methods ? (m) => methods.has(m) : () => true,
    matchesRequest:
      matchHost && matchHeaders
        ? (req) => matchHost(req) && matchHeaders(req)
        : (matchHost ?? matchHeaders ?? (() => true)),
    rewrite:
      route.stripPrefix !== undefined
        ? compileStripPrefix(route, `${path}.stripPrefix`)
        : route.rewrite !== undefined
          ? compileTemplate(route, `${path}.rewrite`)
          : undefined,
    requestHeaders: compileTransform(route.requestHeaders),
    responseHeaders: compileTransform(route.responseHeaders),
  };
}
