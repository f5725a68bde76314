import { createPublicKey, type KeyObject } from 'node:crypto';
import { silentLogger, type Logger } from '@turnpike/core';

/** One key of a set: the key, and what the set says it is for. */
interface JwkEntry {
  readonly key: KeyObject;
  /** The JWK's `alg`, when it names one: a token of another algorithm cannot use the key. */
  readonly alg: string | undefined;
}

export interface JwksSettings {
  readonly uri: string;
  readonly refreshMs: number;
  readonly minRefetchMs: number;
  readonly timeoutMs: number;
  readonly logger?: Logger;
}

/**
 * The keys of a JWKS URL, kept in memory. Fetched at start and every `refreshMs` (an unref'd
 * timer); a token whose `kid` is not in the set asks for one fetch, at most once per
 * `minRefetchMs` (a flood of made-up kids costs one request to the issuer), all waiters sharing
 * it. A failed fetch keeps the last good set: while the issuer is unreachable the keys it
 * published still verify. A rotation (a new kid) is picked up by the refetch, with no restart.
 *
 * Why not jwks-rsa: it caches each kid on its own and forgets it when the entry's age runs
 * out, whether or not the issuer answers the next fetch, and it has no scheduled refresh; the
 * last good set is what a gateway needs when the issuer is down.
 */
export class JwksKeys {
  private keys = new Map<string, JwkEntry>();
  /** A set without kids: its one key, when it has exactly one. */
  private only: JwkEntry | undefined;
  private lastFetch = 0;
  private inflight: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;
  private closed = false;
  private readonly logger: Logger;
  /** Fetches made, for tests and stats. */
  fetches = 0;
  /** Called when a refresh drops a kid the set had (the verifier forgets what it cached). */
  removed: (() => void) | undefined;

  constructor(private readonly s: JwksSettings) {
    this.logger = s.logger ?? silentLogger;
  }

  /** Starts the first fetch and the refresh timer. */
  start(): void {
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.s.refreshMs);
    this.timer.unref();
  }

  /** The key for `kid` (and `alg`); fetches once more for an unknown kid when allowed. */
  async keyFor(kid: string | undefined, alg: string): Promise<KeyObject | undefined> {
    let entry = this.find(kid);
    if (entry === undefined) {
      if (this.inflight !== undefined) await this.inflight;
      else if (Date.now() - this.lastFetch >= this.s.minRefetchMs) await this.refresh();
      entry = this.find(kid);
    }
    if (entry === undefined || (entry.alg !== undefined && entry.alg !== alg)) return undefined;
    return entry.key;
  }

  private find(kid: string | undefined): JwkEntry | undefined {
    return kid === undefined ? this.only : this.keys.get(kid);
  }

  /** One fetch at a time; a failure keeps the keys there are. */
  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.inflight ??= this.fetchKeys().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async fetchKeys(): Promise<void> {
    this.lastFetch = Date.now();
    this.fetches++;
    try {
      const res = await fetch(this.s.uri, {
        signal: AbortSignal.timeout(this.s.timeoutMs),
        headers: { accept: 'application/json' },
        redirect: 'error',
      });
      if (res.status !== 200) throw new Error(`status ${res.status}`);
      const body = (await res.json()) as { keys?: unknown };
      if (!Array.isArray(body.keys)) throw new Error('no "keys" list');
      const keys = new Map<string, JwkEntry>();
      let unnamed: JwkEntry[] = [];
      for (const jwk of body.keys as Record<string, unknown>[]) {
        const entry = entryOf(jwk);
        if (entry === undefined) continue;
        if (typeof jwk.kid === 'string' && jwk.kid !== '') keys.set(jwk.kid, entry);
        else unnamed.push(entry);
      }
      if (keys.size === 0 && unnamed.length === 0) throw new Error('no usable signing key');
      const removed = [...this.keys.keys()].some((kid) => !keys.has(kid));
      this.keys = keys;
      // A key the issuer withdrew (perhaps compromised): what it verified is not kept either.
      if (removed) this.removed?.();
      this.only = keys.size === 0 && unnamed.length === 1 ? unnamed[0] : undefined;
      unnamed = [];
      if (this.failing) {
        this.failing = false;
        this.logger.info('JWKS: keys fetched again', { uri: this.s.uri, keys: keys.size });
      }
    } catch (err) {
      if (!this.failing) {
        this.failing = true;
        this.logger.warn('JWKS: fetch failed; the last good keys stay in use', {
          uri: this.s.uri,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** A JWK as a verification key: public RSA or EC signing keys only (no private parts, no `oct`). */
function entryOf(jwk: Record<string, unknown>): JwkEntry | undefined {
  if (typeof jwk !== 'object' || jwk === null) return undefined;
  if (jwk.use !== undefined && jwk.use !== 'sig') return undefined;
  if (jwk.kty !== 'RSA' && jwk.kty !== 'EC') return undefined;
  if ('d' in jwk) return undefined;
  try {
    const key = createPublicKey({ key: jwk as never, format: 'jwk' });
    return { key, alg: typeof jwk.alg === 'string' ? jwk.alg : undefined };
  } catch {
    return undefined;
  }
}
