import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from '@turnpike/core';
import type { BreakerSync, CircuitBreaker, PeerState } from './breaker';
import type { RedisLike, SharedOptions } from './types';

/** Circuits shared through one Redis: add each, close once. */
export interface Sharing {
  add(breaker: CircuitBreaker): void;
  /** Stops listening; closes the connections it opened (not a client it was given). */
  close(): Promise<void>;
}

/** What one instance announces on the channel. */
interface Message {
  readonly v: 1;
  /** The announcing instance (its own messages are ignored). */
  readonly id: string;
  readonly key: string;
  readonly kind: 'open' | 'closed';
  readonly until: number;
  readonly opens: number;
  readonly at: number;
}

/** A command that did not answer in this long is given up (sharing then decides alone). */
const COMMAND_TIMEOUT_MS = 1000;

/** The key of a circuit: its name, and its route for a route's own circuit. */
function keyOf(breaker: CircuitBreaker): string {
  const name = encodeURIComponent(breaker.name);
  return breaker.route === undefined ? name : `${name}:${encodeURIComponent(breaker.route)}`;
}

/** The ioredis options of a connection sharing opens: fail fast while Redis is away, reconnect for ever. */
const CONNECTION = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: COMMAND_TIMEOUT_MS,
  connectTimeout: 2000,
  retryStrategy: (times: number) => Math.min(100 * times, 2000),
  lazyConnect: false,
} as const;

/**
 * Shares circuits across instances through Redis:
 * - a circuit that opens here is announced on a pub/sub channel and kept in a key with a TTL
 *   until its half-open time, so instances that start (or reconnect) later read it;
 * - an open state heard from a peer is taken as this instance's, until the same time;
 * - when the open time passes, one instance takes a short-lived lock (SET NX PX) and probes;
 *   the others stay open until its verdict (closed, or open again) arrives;
 * - Redis down or slow: every call fails fast (no offline queue, a command timeout), each
 *   instance breaks on its own, and sharing resumes (state re-read, own opens re-announced)
 *   once Redis is ready again. Nothing here ever throws into the request path.
 */
export function shareCircuits(options: SharedOptions, logger: Logger): Sharing {
  const prefix = options.prefix ?? 'turnpike:';
  const lockMs = options.probeLockMs ?? 10_000;
  const channel = `${prefix}breaker`;
  const id = randomUUID();
  const given = typeof options.redis === 'string' ? undefined : options.redis;
  const cmd = (given ?? new Redis(options.redis as string, CONNECTION)) as unknown as Redis;
  const sub = given === undefined ? cmd.duplicate() : (given.duplicate() as unknown as Redis);
  const circuits = new Map<string, CircuitBreaker[]>();
  let closed = false;
  let down = false;

  const onError = (err: Error): void => {
    if (down || closed) return;
    down = true;
    logger.warn('breaker sharing: Redis unavailable; circuits decide alone until it returns', {
      error: err.message,
    });
  };
  /** Both connections up: sharing works again; read what peers decided meanwhile. */
  const onReady = (): void => {
    if (closed || cmd.status !== 'ready' || sub.status !== 'ready') return;
    if (down) logger.info('breaker sharing: Redis is back; sharing resumes');
    down = false;
    void resync();
  };
  /**
   * The subscription is made once the subscriber connection is up: with no offline queue a
   * SUBSCRIBE sent while connecting is refused at once. (ioredis re-subscribes by itself
   * after a reconnect; subscribing again is harmless.)
   */
  const onSubReady = (): void => {
    if (closed) return;
    sub.subscribe(channel).then(onReady, onError);
  };
  cmd.on('error', onError);
  sub.on('error', onError);
  cmd.on('ready', onReady);
  sub.on('ready', onSubReady);
  sub.on('message', onMessage);
  if (sub.status === 'ready') onSubReady();

  /** A command with a deadline of our own: a client given to us may queue while Redis is away. */
  function timed<T>(run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error('Redis did not answer in time')),
        COMMAND_TIMEOUT_MS,
      );
      timer.unref();
      run().then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  /** Fire and forget: a failure is Redis being away, already logged once. */
  function send(run: () => Promise<unknown>): void {
    if (closed || cmd.status !== 'ready') return;
    timed(run).catch(onError);
  }

  function announce(key: string, message: Message, ttlMs: number): void {
    const json = JSON.stringify(message);
    send(() => {
      const m = cmd.multi();
      if (message.kind === 'open') m.set(`${channel}:state:${key}`, json, 'PX', Math.max(1, ttlMs));
      else m.del(`${channel}:state:${key}`);
      m.del(`${channel}:lock:${key}`);
      m.publish(channel, json);
      return m.exec();
    });
  }

  /** A message from the channel (or a key read at resync, for `key`); anything malformed is dropped. */
  function onMessage(ch: string, raw: string, key?: string): void {
    if (ch !== channel) return;
    let m: Message;
    try {
      m = JSON.parse(raw) as Message;
    } catch {
      return;
    }
    if (typeof m !== 'object' || m === null || m.v !== 1 || m.id === id) return;
    if (m.kind !== 'open' && m.kind !== 'closed') return;
    if (key !== undefined) m = { ...m, key };
    if (typeof m.key !== 'string') return;
    deliver(m);
  }

  function deliver(m: Message): void {
    const list = circuits.get(m.key);
    if (list === undefined) return;
    const peer: PeerState =
      m.kind === 'open'
        ? {
            kind: 'open',
            until: Number(m.until),
            opens: Math.trunc(Number(m.opens)) || 1,
            at: Number(m.at),
          }
        : { kind: 'closed', at: Number(m.at) };
    for (const b of list) b.adopt(peer);
  }

  /** After (re)connecting: read what peers decided while we were away; tell them ours. */
  async function resync(): Promise<void> {
    for (const [key, list] of circuits) {
      let raw: string | null;
      try {
        raw = await timed(() => cmd.get(`${channel}:state:${key}`));
      } catch (err) {
        onError(err as Error);
        return;
      }
      if (raw !== null) onMessage(channel, raw, key);
      const storedAt = raw === null ? undefined : openedAt(raw);
      for (const b of list) {
        const s = b.state;
        // Closed here after the stored open (its DEL was lost while Redis was away): the
        // close is announced again, so that instances that start later do not reopen.
        if (s.kind === 'closed' && storedAt !== undefined && b.changedAt > storedAt) {
          const m: Message = { v: 1, id, key, kind: 'closed', until: 0, opens: 0, at: b.changedAt };
          announce(key, m, 0);
          continue;
        }
        // Announced with the time it opened: peers that know better (a later change) keep theirs.
        if (s.kind === 'open' && s.until > Date.now()) {
          const m: Message = {
            v: 1,
            id,
            key,
            kind: 'open',
            until: s.until,
            opens: s.opens,
            at: b.changedAt,
          };
          announce(key, m, s.until - Date.now());
        }
      }
    }
  }

  const sync: BreakerSync = {
    get active() {
      return !closed && cmd.status === 'ready';
    },
    opened(breaker, until, opens, at) {
      const key = keyOf(breaker);
      announce(key, { v: 1, id, key, kind: 'open', until, opens, at }, until - Date.now());
    },
    closed(breaker, at) {
      const key = keyOf(breaker);
      announce(key, { v: 1, id, key, kind: 'closed', until: 0, opens: 0, at }, 0);
    },
    requestProbe(breaker) {
      const key = keyOf(breaker);
      timed(() => cmd.set(`${channel}:lock:${key}`, id, 'PX', lockMs, 'NX')).then(
        (won) => {
          if (won === 'OK') breaker.probeGranted();
          else breaker.probeDenied(Math.min(1000, lockMs));
        },
        (err: unknown) => {
          // No answer: this instance decides alone, as without sharing.
          onError(err as Error);
          breaker.probeGranted();
        },
      );
    },
  };

  return {
    add(breaker) {
      const key = keyOf(breaker);
      const list = circuits.get(key);
      if (list === undefined) circuits.set(key, [breaker]);
      else list.push(breaker);
      breaker.sync = sync;
      if (cmd.status === 'ready') void resync();
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const list of circuits.values()) for (const b of list) b.sync = undefined;
      circuits.clear();
      sub.off('message', onMessage);
      cmd.off('ready', onReady);
      sub.off('ready', onSubReady);
      await Promise.all([quit(sub), given === undefined ? quit(cmd) : Promise.resolve()]);
      cmd.off('error', onError);
      sub.off('error', onError);
      // A connection of ours that errs after close (a late reconnect failure) still has a listener.
      sub.on('error', ignore);
      if (given === undefined) cmd.on('error', ignore);
    },
  };
}

function ignore(): void {}

/** The change time of a stored open state, or undefined for anything else. */
function openedAt(raw: string): number | undefined {
  try {
    const m = JSON.parse(raw) as Partial<Message> | null;
    return m?.kind === 'open' && typeof m.at === 'number' ? m.at : undefined;
  } catch {
    return undefined;
  }
}

/** Closes a connection: politely when it is up, at once when it is not (quit would wait). */
async function quit(client: Redis | RedisLike): Promise<void> {
  if (client.status === 'ready') {
    try {
      await Promise.race([
        client.quit(),
        new Promise((resolve) => setTimeout(resolve, COMMAND_TIMEOUT_MS).unref()),
      ]);
    } catch {
      // Closed under us: nothing to do.
    }
  }
  client.disconnect();
}
