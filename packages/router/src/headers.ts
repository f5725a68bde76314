import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import proxyaddr from 'proxy-addr';
import { ConfigError } from '@turnpike/core';
import type { HeaderTransform, TrustProxy } from './types';

/** Hop-by-hop headers (RFC 9110 §7.6.1, plus the common non-standard ones): never forwarded. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  'transfer-encoding',
  'http2-settings',
]);

/** Client headers that name forwarding hops; replaced by what the gateway computes. */
const FORWARDING = ['forwarded', 'x-real-ip'];

/** Framing headers: never removed because `Connection` names them (the body limit relies on them). */
const FRAMING = new Set(['host', 'content-length', 'transfer-encoding']);

/**
 * A header name with `_` read as `-`, lower case: the name many servers (CGI, nginx with
 * `underscores_in_headers`, some frameworks) will see. Hygiene compares these.
 */
export function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.indexOf('_') === -1 ? lower : lower.replace(/_/g, '-');
}

/**
 * Every `-`/`_` spelling of a header name: `x-user-id` → `x-user-id`, `x_user_id`,
 * `x-user_id`, … Past six separators only the two uniform spellings (the list would double
 * per separator); hygiene itself compares {@link canonicalName}s and needs no list.
 */
export function spellings(name: string): string[] {
  const parts = name.toLowerCase().split(/[-_]/);
  if (parts.length > 7) return [parts.join('-'), parts.join('_')];
  let out = [parts[0]!];
  for (const part of parts.slice(1)) out = out.flatMap((p) => [`${p}-${part}`, `${p}_${part}`]);
  return out;
}

function tokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const joined = Array.isArray(value) ? value.join(',') : value;
  return joined
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t.length > 0);
}

/** Which addresses in front of the gateway are trusted; compiled once. */
export function compileTrust(
  trust: TrustProxy,
  path = 'trustProxy',
): ((addr: string, i: number) => boolean) | undefined {
  if (trust === false) return undefined;
  if (typeof trust === 'number') return trust === 0 ? undefined : (_addr, i) => i < trust;
  try {
    return proxyaddr.compile([...trust]);
  } catch {
    throw new ConfigError(
      path,
      'a list of IP addresses or CIDRs',
      trust,
      `['10.0.0.0/8', '127.0.0.1']`,
    );
  }
}

/**
 * A Host header RFC 9112 §3.2 allows: a host name (unreserved characters and escapes) or a
 * bracketed IP literal, and an optional port. No userinfo, path, quotes or empty value.
 */
const HOST = /^(?:(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})+|\[[0-9A-Fa-f:.]+\])(?::\d{0,5})?$/;

/** True for a Host (or X-Forwarded-Host) value the gateway forwards. */
export function validHost(host: string): boolean {
  if (!HOST.test(host)) return false;
  const colon = host.lastIndexOf(':');
  // A port past 65535 names no server (an empty one is allowed, RFC 3986 §3.2.3).
  return colon === -1 || host.endsWith(']') || Number(host.slice(colon + 1)) <= 65535;
}

/** What the gateway says about the client upstream (RFC 7239): addresses only, IPv6 quoted. */
function forwardedValue(ip: string, host: string | undefined, proto: string): string {
  const forIp = isIP(ip) === 6 ? `"[${ip}]"` : isIP(ip) === 4 ? ip : 'unknown';
  const hostPart = host !== undefined && validHost(host) ? `;host="${host}"` : '';
  return `for=${forIp}${hostPart};proto=${proto}`;
}

/** The first comma-separated element of a header value, trimmed; undefined when empty. */
export function firstValue(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  const s = Array.isArray(value) ? value[0] : value;
  if (s === undefined) return undefined;
  const comma = s.indexOf(',');
  return (comma === -1 ? s : s.slice(0, comma)).trim() || undefined;
}

const CLIENT_IP = 'clientIp';

/**
 * The client address the router computed from `trustProxy` (the nearest address not a
 * trusted proxy, from valid `X-Forwarded-For` entries only), set on `req.clientIp` by
 * hygiene; the socket's address for a request the router has not seen. Key on this, not on
 * `req.ip`: after hygiene rewrites X-Forwarded-For, Express's `req.ip` is the proxy's view.
 */
export function clientIp(req: IncomingMessage): string {
  const ip = (req as { [CLIENT_IP]?: string })[CLIENT_IP];
  return ip ?? req.socket.remoteAddress ?? '';
}

/**
 * Builds the request hygiene step, once: removes hop-by-hop headers and every header named in
 * `Connection`, the client's `X-Forwarded-*`, `Forwarded`, `X-Real-IP` and identity headers
 * (every `-`/`_` spelling), then sets the forwarding headers from the `trustProxy` policy.
 * WebSocket upgrades keep `Connection: upgrade` and `Upgrade`.
 */
export function createHygiene(options: {
  trustProxy: TrustProxy;
  identityHeaders: readonly string[];
  stripHeaders?: readonly string[];
}) {
  const trust = compileTrust(options.trustProxy);
  const strip = new Set<string>([...HOP_BY_HOP, ...FORWARDING, 'expect']);
  strip.delete('transfer-encoding'); // kept, normalised below: the body stays framed upstream
  for (const name of options.identityHeaders) strip.add(canonicalName(name));
  for (const name of options.stripHeaders ?? []) strip.add(canonicalName(name));
  const keepForUpgrade = new Set(['connection', 'upgrade']);

  return function hygiene(req: IncomingMessage, upgrade: boolean): void {
    const h: IncomingHttpHeaders = req.headers;
    const socket = req.socket;
    const remote = socket.remoteAddress ?? '';
    const encrypted = (socket as TLSSocket).encrypted === true;

    // What the gateway will say about the client, computed before client headers go.
    let clientIp = remote;
    let chain = remote;
    let proto = encrypted ? 'https' : 'http';
    let host = h.host;
    const xff = h['x-forwarded-for'];
    if (trust !== undefined && xff !== undefined && trust(remote, 0)) {
      // Walk X-Forwarded-For from the nearest hop while the hop is trusted. Only a valid
      // address counts: the walk stops at anything else, and the last valid hop is the client.
      const parts = (typeof xff === 'string' ? xff : xff.join(',')).split(',');
      const hops = [remote];
      for (let j = parts.length - 1; j >= 0; j--) {
        const addr = parts[j]!.trim();
        if (isIP(addr) === 0) break;
        hops.push(addr);
        clientIp = addr;
        if (!trust(addr, hops.length - 1)) break;
      }
      chain = hops.reverse().join(', ');
    }
    if (trust !== undefined && trust(remote, 0)) {
      const p = firstValue(h['x-forwarded-proto']);
      if (p === 'http' || p === 'https') proto = p;
      const fh = firstValue(h['x-forwarded-host']);
      if (fh !== undefined && validHost(fh)) host = fh;
    }
    (req as { [CLIENT_IP]?: string })[CLIENT_IP] = clientIp;

    const connection = h.connection;
    if (connection !== undefined && connection !== 'keep-alive' && connection !== 'close') {
      for (const name of tokens(connection)) {
        if (!FRAMING.has(name) && !(upgrade && keepForUpgrade.has(name))) delete h[name];
      }
    }
    for (const name in h) {
      // Node lower-cases names; `_` spellings are compared as `-`.
      const canon = name.indexOf('_') === -1 ? name : name.replace(/_/g, '-');
      if (
        (strip.has(canon) && !(upgrade && keepForUpgrade.has(canon))) ||
        canon.startsWith('x-forwarded') ||
        (canon === 'x-request-id' && name !== canon) // only the one the gateway checks goes up
      ) {
        delete h[name];
      }
    }
    if (upgrade) h.connection = 'upgrade';
    if (h['transfer-encoding'] !== undefined) h['transfer-encoding'] = 'chunked';

    h['x-forwarded-for'] = chain;
    h['x-forwarded-proto'] = proto;
    if (host !== undefined) h['x-forwarded-host'] = host;
    h['x-real-ip'] = clientIp;
    h.forwarded = forwardedValue(clientIp, host, proto);
  };
}

/** True when the request carries more than one `Host` header. */
export function hasDuplicateHost(req: IncomingMessage): boolean {
  const raw = req.rawHeaders;
  let seen = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (seen) return true;
      seen = true;
    }
  }
  return false;
}

/** A header transform compiled once. */
export interface CompiledTransform {
  /** Names removed or replaced (lower case). */
  readonly drop: ReadonlySet<string>;
  /** The same, `_` read as `-`: request headers spelled with `_` go too. */
  readonly dropCanonical: ReadonlySet<string>;
  readonly set: readonly (readonly [string, string])[];
  readonly add: readonly (readonly [string, string])[];
}

/** Compiles a header transform, or undefined when it does nothing. */
export function compileTransform(t: HeaderTransform | undefined): CompiledTransform | undefined {
  if (!t) return undefined;
  const set = Object.entries(t.set ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
  const add = Object.entries(t.add ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
  const drop = new Set([...(t.remove ?? []).map((n) => n.toLowerCase()), ...set.map(([k]) => k)]);
  if (drop.size === 0 && add.length === 0) return undefined;
  return { drop, dropCanonical: new Set([...drop].map(canonicalName)), set, add };
}

/** Applies a transform to request headers; a name removed or set goes in every `-`/`_` spelling. */
export function transformRequest(h: IncomingHttpHeaders, t: CompiledTransform): void {
  for (const name in h) {
    if (name.indexOf('_') !== -1 && t.dropCanonical.has(canonicalName(name))) delete h[name];
  }
  for (const name of t.drop) delete h[name];
  for (const [name, value] of t.set) h[name] = value;
  for (const [name, value] of t.add) {
    const old = h[name];
    h[name] = old === undefined ? value : `${Array.isArray(old) ? old.join(', ') : old}, ${value}`;
  }
}

/** A response head for `res.writeHead(status, list)`: a repeated name once, with its values. */
export type HeaderList = (string | string[])[];

/** Past this many headers, repeats are found through a Map instead of a scan of the list. */
const SCAN_MAX = 16;

/**
 * The upstream response's headers as sent to the client: hop-by-hop headers and those named
 * in its `Connection` removed, the route's transform applied, and with `requestId` the
 * gateway's `X-Request-ID` in place of the upstream's. Keeps the upstream's
 * spelling. A repeated name (Set-Cookie) comes once with all its values: Node's
 * `writeHead(status, list)` then writes every value, whether or not headers were set on the
 * response before (with headers set before, it replaces a name per entry, so repeats given
 * separately would keep only the last). `raw` is undici's (Buffers) or Node's (strings).
 */
export function responseHeaders(
  raw: readonly (string | Buffer)[],
  t: CompiledTransform | undefined,
  requestId?: string,
): HeaderList {
  const n = raw.length;
  const names: string[] = new Array<string>(n >> 1);
  let named: Set<string> | undefined;
  for (let i = 0; i < n; i += 2) {
    const r = raw[i]!;
    const lower = (typeof r === 'string' ? r : r.toString('latin1')).toLowerCase();
    names[i >> 1] = lower;
    if (lower === 'connection') {
      const v = raw[i + 1]!;
      const value = typeof v === 'string' ? v : v.toString('latin1');
      if (value === 'keep-alive' || value === 'close') continue; // names no other header
      named ??= new Set();
      for (const token of tokens(value)) named.add(token);
    }
  }
  const out: HeaderList = [];
  const lowers: string[] = [];
  const index = n > 2 * SCAN_MAX ? new Map<string, number>() : undefined;
  const append = (name: string, lower: string, value: string): void => {
    const j = index !== undefined ? (index.get(lower) ?? -1) : lowers.indexOf(lower);
    if (j === -1) {
      index?.set(lower, lowers.length);
      lowers.push(lower);
      out.push(name, value);
      return;
    }
    const prev = out[2 * j + 1]!;
    if (Array.isArray(prev)) prev.push(value);
    else out[2 * j + 1] = [prev, value];
  };
  for (let i = 0; i < n; i += 2) {
    const lower = names[i >> 1]!;
    if (HOP_BY_HOP.has(lower) || named?.has(lower) || t?.drop.has(lower)) continue;
    if (requestId !== undefined && lower === 'x-request-id') continue;
    const r = raw[i]!;
    const v = raw[i + 1]!;
    append(
      typeof r === 'string' ? r : r.toString('latin1'),
      lower,
      typeof v === 'string' ? v : v.toString('latin1'),
    );
  }
  if (requestId !== undefined) append('X-Request-ID', 'x-request-id', requestId);
  if (t) {
    for (const [name, value] of t.set) append(name, name, value);
    for (const [name, value] of t.add) append(name, name, value);
  }
  return out;
}
