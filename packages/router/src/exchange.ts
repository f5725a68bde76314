import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { CompiledRoute } from './route';

const EXCHANGE = Symbol('turnpike.exchange');

/** The router's state for one request: one object, on one symbol of the request. */
export class Exchange {
  /** Deadline timer, while the request is in flight. */
  timer: NodeJS.Timeout | undefined = undefined;
  /** The upstream request, once the proxy has a socket for it. */
  proxyReq: ClientRequest | undefined = undefined;
  /** The outcome is decided (response complete, failed or abandoned): nothing more to do. */
  settled = false;
  /** For WebSocket upgrades: the client socket and the bytes read past the request head. */
  socket: Duplex | undefined = undefined;
  head: Buffer | undefined = undefined;
  /** The upstream request path, when the proxy's own URL join would alter it (`http:/`). */
  path: string | undefined = undefined;

  constructor(
    readonly route: CompiledRoute,
    readonly segments: readonly string[],
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
  ) {}
}

/** The exchange of a request the router is handling. */
export function exchangeOf(req: IncomingMessage): Exchange | undefined {
  return (req as unknown as { [EXCHANGE]?: Exchange })[EXCHANGE];
}

/** Attaches an exchange to its request. */
export function setExchange(req: IncomingMessage, ex: Exchange): void {
  (req as unknown as { [EXCHANGE]?: Exchange })[EXCHANGE] = ex;
}
