import { ConfigError } from './validate';

/** A target as written in a config: a URL, or a URL with a weight. */
export type TargetInput = string | { url: string; weight?: number };

/**
 * A parsed upstream target. Built once at start-up; its fields are shaped like the URL object
 * the proxy takes, so a request never parses a URL.
 */
export interface Target {
  /** The URL as configured, e.g. `http://10.0.0.1:8000`. */
  readonly url: string;
  /** Relative weight, for strategies that use it; 0 drains the target (no new requests). Default 1. */
  readonly weight: number;
  readonly protocol: 'http:' | 'https:';
  /** Host name without brackets, e.g. `10.0.0.1` or `::1`. */
  readonly hostname: string;
  /** The `Host` header sent upstream: IPv6 in brackets, the port only when not the default. */
  readonly host: string;
  readonly port: number;
  /** Base path prepended to every forwarded path; empty for `/`. */
  readonly path: string;
}

const EXAMPLE = `'http://10.0.0.1:8000' or { url: 'http://10.0.0.1:8000', weight: 2 }`;

/** Parses one target; throws a ConfigError naming `path` for anything that is not an http(s) URL. */
export function parseTarget(input: unknown, path: string): Target {
  let url: unknown;
  let weight: unknown = 1;
  if (typeof input === 'string') {
    url = input;
  } else if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    for (const key of Object.keys(input)) {
      if (key !== 'url' && key !== 'weight') {
        throw new ConfigError(`${path}.${key}`, 'a known key (one of url, weight)', key);
      }
    }
    ({ url, weight = 1 } = input as { url?: unknown; weight?: unknown });
    path = `${path}.url`;
  } else {
    throw new ConfigError(path, 'a target URL or { url, weight }', input, EXAMPLE);
  }
  if (typeof url !== 'string') throw new ConfigError(path, 'an http(s) URL', url, EXAMPLE);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(path, 'an absolute http(s) URL', url, EXAMPLE);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConfigError(path, 'an http: or https: URL', url, EXAMPLE);
  }
  if (parsed.username || parsed.password || parsed.search || parsed.hash) {
    throw new ConfigError(path, 'a URL without credentials, query or fragment', url, EXAMPLE);
  }
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > 1000) {
    throw new ConfigError(
      path.replace(/\.url$/, '.weight'),
      'an integer from 0 (draining) to 1000',
      weight,
    );
  }
  const port = parsed.port ? Number(parsed.port) : parsed.protocol === 'https:' ? 443 : 80;
  const hostname = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
  const base = parsed.pathname === '/' ? '' : parsed.pathname.replace(/\/$/, '');
  return Object.freeze({
    url,
    weight,
    protocol: parsed.protocol,
    hostname,
    host: parsed.host,
    port,
    path: base,
  });
}
