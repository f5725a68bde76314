import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ipKeyGenerator } from 'express-rate-limit';
import type { KeySource } from './types';

/** A key function as a limit runs it: synchronous for the built-in sources. */
export type KeyFunction = (req: IncomingMessage, res: ServerResponse) => string | Promise<string>;

/** Thrown for a key function that returned no usable key: the request is a 500, never a shared bucket. */
export class KeyError extends Error {
  override readonly name = 'KeyError';
}

type Addressed = IncomingMessage & {
  clientIp?: string;
  ip?: string;
  auth?: { subject?: unknown; keyId?: unknown };
};

/**
 * The client address: the one the Turnpike router computed from its `trustProxy`
 * (`req.clientIp`), else Express's `req.ip` (its own `trust proxy` setting, in an app without
 * the gateway), else the socket's peer. Never a header the client sent.
 */
export function clientAddress(req: IncomingMessage): string {
  const r = req as Addressed;
  return r.clientIp ?? r.ip ?? req.socket?.remoteAddress ?? '';
}

/** The Express apps warned of already. */
const warned = new WeakSet<object>();

/**
 * In an app without the gateway: Express's `trust proxy` set to true takes the client's own
 * `X-Forwarded-For` as its address, so any client picks its own key. express-rate-limit warns
 * of it (its checks are off here: Turnpike checks its options itself); so does this, once per app.
 */
function checkTrust(req: Addressed): void {
  const app = (req as { app?: { get?(name: string): unknown } }).app;
  if (app === undefined || warned.has(app)) return;
  if (typeof app.get === 'function' && app.get('trust proxy') === true) {
    warned.add(app);
    process.emitWarning(
      "Express's 'trust proxy' is true: any client can choose the address the rate limit " +
        "counts by, with X-Forwarded-For. Set it to what is in front of the app (e.g. 'loopback', 1).",
      { code: 'TURNPIKE_PERMISSIVE_TRUST_PROXY' },
    );
  }
}

/** The key of an address: IPv4 as it is, IPv6 as its /`subnet` network (IPv4-mapped IPv6 as IPv4). */
export function addressKey(ip: string, subnet: number | false): string {
  if (ip.indexOf(':') === -1) return ip;
  return ipKeyGenerator(ip, subnet);
}

/** Long client-chosen values are hashed: a Redis key stays short whatever a header holds. */
function bounded(value: string): string {
  return value.length <= 128 ? value : createHash('sha256').update(value).digest('base64url');
}

/** Compiles a key source once. Keys of each kind are prefixed, so a subject cannot pose as an address. */
export function compileKey(source: KeySource, subnet: number | false): KeyFunction {
  let checked = false;
  const ip = (req: IncomingMessage): string => {
    if (!checked && (req as Addressed).clientIp === undefined) {
      checked = true;
      checkTrust(req);
    }
    return `ip:${addressKey(clientAddress(req), subnet)}`;
  };
  if (source === 'ip') return ip;
  if (source === 'subject' || source === 'api-key') {
    const field = source === 'subject' ? 'subject' : 'keyId';
    const tag = source === 'subject' ? 'sub:' : 'key:';
    return (req) => {
      const value = (req as Addressed).auth?.[field];
      if (typeof value === 'string' && value !== '') return tag + bounded(value);
      // A numeric id (a database key) is an id, not a reason to count by address.
      if (typeof value === 'number' && Number.isFinite(value)) return tag + String(value);
      return ip(req);
    };
  }
  if (typeof source === 'function') {
    return async (req, res) => {
      const key = await source(req, res);
      if (typeof key !== 'string' || key === '') {
        throw new KeyError(
          `the key function returned ${typeof key === 'string' ? 'an empty string' : typeof key}, not a key`,
        );
      }
      // A client-chosen value (an API key header, …) stays short in memory and in Redis.
      return bounded(key);
    };
  }
  const name = source.header;
  return (req) => {
    const raw = req.headers[name];
    const value = Array.isArray(raw) ? raw[0] : raw;
    return typeof value === 'string' && value !== '' ? `h:${bounded(value)}` : ip(req);
  };
}
