import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError, sendProblem, silentLogger, type Logger } from '@turnpike/core';
import { UNAVAILABLE, apiKeyAnswers, REALM } from './answers';
import type { AuthIdentity, AuthenticatedRequest } from './types';

/** One API key of the config: the key (hashed at start) or its SHA-256, and whose it is. */
export interface ApiKeyEntry {
  /** The key itself: hashed at start, never kept. Not with `hash`. */
  key?: string;
  /** `sha256:<64 hex>` of the key (what to keep in a config file). Not with `key`. */
  hash?: string;
  /** The consumer the key belongs to: `req.auth.subject` and `consumer`. Required. */
  consumer: string;
  /** A stable id of the key for logs and limits (never the key). Default: the first 12 hex of its hash. */
  id?: string;
  roles?: readonly string[];
  scopes?: readonly string[];
}

/** What a lookup function returns for a key it knows. */
export interface ApiKeyOwner {
  consumer: string;
  id?: string;
  roles?: readonly string[];
  scopes?: readonly string[];
}

/** Options of {@link apiKeyAuth}. */
export interface ApiKeyOptions {
  /** Keys in the config. */
  keys?: readonly ApiKeyEntry[];
  /** Or a lookup (a database): the owner of a key, or undefined. May be async. */
  lookup?: (key: string) => ApiKeyOwner | undefined | Promise<ApiKeyOwner | undefined>;
  /** The header the key is sent in. Default `'x-api-key'`. */
  header?: string;
  /** A query parameter that may carry it instead (it ends up in logs and histories): off by default. */
  query?: string | false;
  /** No key: let the request through without `req.auth`. Default false. */
  optional?: boolean;
  realm?: string;
  logger?: Logger;
}

const HASH = /^sha256:([0-9a-f]{64})$/;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const MAX_KEY = 512;

/** The SHA-256 of a key: what the config keeps and what a presented key is compared by. */
export function hashApiKey(key: string): string {
  return `sha256:${createHash('sha256').update(key, 'utf8').digest('hex')}`;
}

interface Known {
  readonly digest: Buffer;
  readonly identity: AuthIdentity;
}

function identityOf(owner: ApiKeyOwner, id: string): AuthIdentity {
  return Object.freeze({
    subject: owner.consumer,
    consumer: owner.consumer,
    keyId: owner.id ?? id,
    roles: Object.freeze([...(owner.roles ?? [])]),
    scopes: Object.freeze([...(owner.scopes ?? [])]),
    claims: Object.freeze({}),
    method: 'api-key' as const,
  });
}

function names(value: unknown, path: string): void {
  if (value === undefined) return;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) {
    throw new ConfigError(path, 'a list of non-empty strings', value);
  }
}

/** The configured keys by digest, checked; throws a ConfigError naming the field. */
export function compileKeys(keys: readonly ApiKeyEntry[], path: string): Map<string, Known> {
  const out = new Map<string, Known>();
  keys.forEach((k, i) => {
    const p = `${path}[${i}]`;
    if (typeof k !== 'object' || k === null) throw new ConfigError(p, 'an object', k);
    if ((k.key === undefined) === (k.hash === undefined)) {
      throw new ConfigError(p, 'one of key or hash', '(both or neither)');
    }
    let hex: string;
    if (k.key !== undefined) {
      if (typeof k.key !== 'string' || k.key.length < 16 || k.key.length > MAX_KEY) {
        // The value is never echoed: it is a secret.
        throw new ConfigError(`${p}.key`, `a key of 16 to ${MAX_KEY} characters`, '(hidden)');
      }
      hex = hashApiKey(k.key).slice(7);
    } else {
      const m = typeof k.hash === 'string' ? HASH.exec(k.hash) : null;
      if (m === null) throw new ConfigError(`${p}.hash`, '"sha256:" and 64 lower-case hex', k.hash);
      hex = m[1]!;
    }
    if (typeof k.consumer !== 'string' || k.consumer === '') {
      throw new ConfigError(`${p}.consumer`, 'the consumer the key belongs to', k.consumer);
    }
    names(k.roles, `${p}.roles`);
    names(k.scopes, `${p}.scopes`);
    if (out.has(hex)) throw new ConfigError(p, 'a key no other entry has', '(a duplicate)');
    out.set(hex, {
      digest: Buffer.from(hex, 'hex'),
      identity: identityOf(k, k.id ?? hex.slice(0, 12)),
    });
  });
  return out;
}

/** A lookup's owner field, as the config's are checked: lists of names, an id string. */
function ownerFieldOk(field: string, value: unknown): boolean {
  if (value === undefined) return true;
  if (field === 'id') return typeof value === 'string' && value !== '';
  return Array.isArray(value) && value.every((v) => typeof v === 'string' && v !== '');
}

type Next = (err?: unknown) => void;
export type ApiKeyMiddleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void;

/** The key a request presents: from the header, else (when enabled) the query; '' for none. */
function presented(req: IncomingMessage, header: string, query: string | false): string {
  const h = req.headers[header];
  const v = Array.isArray(h) ? h[0] : h;
  if (typeof v === 'string' && v !== '') return v;
  if (query === false) return '';
  const url = req.url ?? '';
  const q = url.indexOf('?');
  if (q === -1) return '';
  return new URLSearchParams(url.slice(q + 1)).get(query) ?? '';
}

/**
 * Express middleware: an API key from a header (or a query parameter, when enabled), looked up
 * by its SHA-256 among the configured keys and compared in constant time, or resolved by
 * `lookup`. Sets `req.auth` (`method: 'api-key'`, subject and consumer the key's owner). No
 * key or an unknown one → 401 problem; the key itself never reaches a log or an answer.
 */
export function apiKeyAuth(options: ApiKeyOptions): ApiKeyMiddleware {
  return compileApiKey(options, 'apiKeyAuth');
}

/** The header an API key is read from, checked (lower case). */
export function apiKeyHeader(options: Pick<ApiKeyOptions, 'header'>, path: string): string {
  const header = (options.header ?? 'x-api-key').toLowerCase();
  if (!TOKEN.test(header)) throw new ConfigError(`${path}.header`, 'a header name', options.header);
  return header;
}

/** {@link apiKeyAuth} with its ConfigErrors under `path` (the gateway's `auth.apiKeys`). */
export function compileApiKey(options: ApiKeyOptions, path: string): ApiKeyMiddleware {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError(path, 'an object: { keys } or { lookup }', options);
  }
  const header = apiKeyHeader(options, path);
  const query = options.query ?? false;
  if (query !== false && (typeof query !== 'string' || query === '')) {
    throw new ConfigError(`${path}.query`, 'a parameter name, or false', query);
  }
  if (options.keys === undefined && options.lookup === undefined) {
    throw new ConfigError(path, 'keys or a lookup function', undefined);
  }
  if (options.keys !== undefined && !Array.isArray(options.keys)) {
    throw new ConfigError(`${path}.keys`, 'a list of { key | hash, consumer }', '(not a list)');
  }
  if (options.lookup !== undefined && typeof options.lookup !== 'function') {
    throw new ConfigError(`${path}.lookup`, 'a function (key) => owner', options.lookup);
  }
  const realm = options.realm ?? 'api';
  if (!REALM.test(realm)) throw new ConfigError(`${path}.realm`, 'a realm name', realm);
  const known = compileKeys(options.keys ?? [], `${path}.keys`);
  const lookup = options.lookup;
  const answers = apiKeyAnswers(realm, header);
  const logger = options.logger ?? silentLogger;
  const optional = options.optional ?? false;

  return function turnpikeApiKey(req, res, next) {
    const key = presented(req, header, query);
    if (key === '') {
      if (optional) return next();
      return sendProblem(req, res, answers.missing);
    }
    const refuse = (why: string): void => {
      logger.info('auth: API key refused', { requestId: (req as { id?: string }).id, reason: why });
      sendProblem(req, res, answers.invalid);
    };
    if (key.length > MAX_KEY) return refuse('too long');
    const digest = createHash('sha256').update(key, 'utf8').digest();
    // The map is keyed by the digest of what the client sent, which tells nothing of a valid
    // key; the bytes are then compared in constant time.
    const hit = known.get(digest.toString('hex'));
    if (hit !== undefined && timingSafeEqual(hit.digest, digest)) {
      (req as AuthenticatedRequest).auth = hit.identity;
      return next();
    }
    if (lookup === undefined) return refuse('unknown key');
    let owner: ApiKeyOwner | undefined | Promise<ApiKeyOwner | undefined>;
    try {
      owner = lookup(key);
    } catch (err) {
      logger.error('auth: API key lookup failed', { error: String(err) });
      return sendProblem(req, res, UNAVAILABLE);
    }
    const done = (o: ApiKeyOwner | undefined): void => {
      if (o === undefined || o === null || typeof o.consumer !== 'string' || o.consumer === '') {
        return refuse('unknown key');
      }
      const bad = ['roles', 'scopes', 'id'].find((f) => !ownerFieldOk(f, (o as never)[f]));
      if (bad !== undefined) {
        logger.error('auth: API key lookup returned a bad owner', { field: bad });
        return sendProblem(req, res, UNAVAILABLE);
      }
      (req as AuthenticatedRequest).auth = identityOf(o, digest.toString('hex').slice(0, 12));
      next();
    };
    if (owner instanceof Promise) {
      owner.then(done, (err: unknown) => {
        logger.error('auth: API key lookup failed', { error: String(err) });
        sendProblem(req, res, UNAVAILABLE);
      });
    } else done(owner);
  };
}
