import type { IncomingMessage } from 'node:http';

/** The logger every package accepts; winston's and pino's loggers fit it, and so does `console`. */
export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
}

/** A logger that drops everything: the default where none is given. */
export const silentLogger: Logger = Object.freeze({
  error() {},
  warn() {},
  info() {},
  debug() {},
});

/** A small key/value store with expiry; memory and Redis back it in later packages. */
export interface KeyValueStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  delete(key: string): Promise<void>;
  close?(): Promise<void>;
}

/** A request that carries the id the gateway assigned (`req.id`). */
export type RequestWithId = IncomingMessage & { id?: string };
