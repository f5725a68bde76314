import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
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

/** What the gateway computes about the client before client headers are removed. */
function forwardedValue(ip: string, host: string | undefined, proto: string): string {
  const forIp = ip.includes(':') ? `"[${ip}]"` : ip;
  const hostPart =
    host !== undefined && /^[A-Za-z0-9.\-:[\]]+$/.test(host) ? `;host="${host}"` : '';
  return `for=${forIp}${hostPart};proto=${proto}`;
}

function firstValue(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  const s = Array.isArray(value) ? value[0] : value;
  if (s === undefined) return undefined;
  const comma = s.indexOf(',');
  return (comma === -1 ? s : s.slice(0, comma)).trim() || undefined;
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
}) {
  const trust = compileTrust(options.trustProxy);
  const strip = new Set<string>([...HOP_BY_HOP, ...FORWARDING, 'expect']);
  strip.delete('transfer-encoding'); // kept, normalised below: the body stays framed upstream
  for (const name of options.identityHeaders) strip.add(canonicalName(name));
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
    if (trust !== undefined) {
      const all = proxyaddr.all(req, trust);
      clientIp = all[all.length - 1] ?? remote;
      chain = all.reverse().join(', ');
      if (trust(remote, 0)) {
        const p = firstValue(h['x-forwarded-proto']);
        if (p === 'http' || p === 'https') proto = p;
        host = firstValue(h['x-forwarded-host']) ?? host;
      }
    }

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
  return { drop, set, add };
}

/** Applies a transform to request headers. */
export function transformRequest(h: IncomingHttpHeaders, t: CompiledTransform): void {
  for (const name of t.drop) delete h[name];
  for (const [name, value] of t.set) h[name] = value;
  for (const [name, value] of t.add) {
    const old = h[name];
    h[name] = old === undefined ? value : `${Array.isArray(old) ? old.join(', ') : old}, ${value}`;
  }
}

/** A response head for `res.writeHead(status, list)`: a repeated name once, with its values. */
export type HeaderList = (string | string[])[];

/** Appends a header to a list, folding a name seen before into an array of values. */
function append(out: HeaderList, lowers: string[], name: string, lower: string, value: string) {
  const j = lowers.indexOf(lower);
  if (j === -1) {
    lowers.push(lower);
    out.push(name, value);
    return;
  }
  const prev = out[2 * j + 1]!;
  if (Array.isArray(prev)) prev.push(value);
  else out[2 * j + 1] = [prev, value];
}

/**
 * The upstream response's headers as sent to the client: hop-by-hop headers and those named
 * in its `Connection` removed, the route's transform applied, and with `requestId` the
 * gateway's `X-Request-ID` in place of the upstream's. Keeps the upstream's spelling. A
 * repeated name (Set-Cookie) comes once with all its values: Node's `writeHead(status, list)`
 * then writes every value, whether or not headers were set on the response before (with
 * headers set before, it replaces a name per entry, so repeats given separately would keep
 * only the last).
 */
export function responseHeaders(
  raw: readonly string[],
  t: CompiledTransform | undefined,
  requestId?: string,
): HeaderList {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      const value = raw[i + 1]!;
      if (value === 'keep-alive' || value === 'close') continue; // names no other header
      named ??= new Set();
      for (const token of tokens(value)) named.add(token);
    }
  }
  const out: HeaderList = [];
  const lowers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named?.has(lower) || t?.drop.has(lower)) continue;
    if (requestId !== undefined && lower === 'x-request-id') continue;
    append(out, lowers, name, lower, raw[i + 1]!);
  }
  if (requestId !== undefined) append(out, lowers, 'X-Request-ID', 'x-request-id', requestId);
  if (t) {
    for (const [name, value] of t.set) append(out, lowers, name, name, value);
    for (const [name, value] of t.add) append(out, lowers, name, name, value);
  }
  return out;
}
