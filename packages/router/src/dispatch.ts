import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { GatewayError, sendProblem } from '@turnpike/core';
import { Exchange, exchangeOf, setExchange } from './exchange';
import { hasDuplicateHost, validHost } from './headers';
import { checkPath } from './path-policy';
import type { Snapshot } from './snapshot';

/**
 * The answers that carry nothing of the request, built once: an Error's stack capture costs
 * more than the rest of a rejection, and a flood of bad requests should not pay it each time.
 */
const PATH_REJECTED = new GatewayError('ERR_TURNPIKE_PATH_REJECTED');
const DUPLICATE_HOST = new GatewayError('ERR_TURNPIKE_BAD_REQUEST', {
  detail: 'The request has more than one Host header.',
});
const BAD_HOST = new GatewayError('ERR_TURNPIKE_BAD_REQUEST', {
  detail: 'The Host header is not a valid host name and port.',
});
const UPGRADE_WITH_BODY = new GatewayError('ERR_TURNPIKE_BAD_REQUEST', {
  detail: 'An upgrade request cannot carry a body.',
});
const TOO_MANY_HEADERS = new GatewayError('ERR_TURNPIKE_HEADERS_TOO_LARGE', {
  detail: 'The request has more header fields than the gateway accepts.',
});
const UNKNOWN_CODING = new GatewayError('ERR_TURNPIKE_NOT_IMPLEMENTED', {
  detail: 'The request uses a transfer coding other than chunked.',
});
const ROUTE_NOT_FOUND = new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND');

/** Node's own header-count cap for a server (`maxHeadersCount`; 2000 when unset). */
function nodeHeaderCap(req: IncomingMessage): number {
  const server = (req.socket as { server?: { maxHeadersCount?: number | null } }).server;
  return server?.maxHeadersCount || 2000;
}

/** Whether an Upgrade header asks for WebSocket (RFC 6455: the token, any case). */
function isWebSocket(value: string | undefined): boolean {
  return value !== undefined && value.trim().toLowerCase() === 'websocket';
}

/** The client's side closed: the outcome, when the router had not decided it yet. */
function onResClose(this: ServerResponse): void {
  const ex = exchangeOf(this.req);
  if (ex === undefined || ex.state === 'settled') return;
  const pending = ex.pending;
  if (pending !== undefined) {
    // A fallback answered (or the client left while it did): the upstream's failure settles.
    ex.settle(pending.kind, pending.error, pending.cause);
    return;
  }
  // Finished without the router settling it: a stage (or a handler route) answered.
  if (this.writableFinished) ex.settle(ex.state === 'stages' ? 'stage' : 'handled');
  else ex.settle('client-gone');
}

/**
 * One request through one snapshot: header count, path policy, Host, framing, hygiene,
 * then the route table and the route's chain. `upgrade` is the client socket of an upgrade.
 */
export function dispatch(
  snap: Snapshot,
  req: IncomingMessage,
  res: ServerResponse,
  upgrade: Duplex | undefined,
  head: Buffer | undefined,
  exit: ((err?: unknown) => void) | undefined,
): void {
  // Timed only for those who hear of refusals.
  const t0 = snap.unrouted.listening ? performance.now() : 0;
  // Node frames the body from every header line but keeps only the first maxHeadersCount in
  // req.headers: a request at its cap may hide a Content-Length past it. Refused before it.
  const count = req.rawHeaders.length >> 1;
  if (count > snap.options.maxHeaderCount || count >= nodeHeaderCap(req)) {
    res.shouldKeepAlive = false;
    return refuse(snap, t0, req, res, TOO_MANY_HEADERS);
  }
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const raw = q === -1 ? url : url.slice(0, q);
  const path = checkPath(raw);
  if (path === undefined) return refuse(snap, t0, req, res, PATH_REJECTED);
  if (path !== raw) req.url = q === -1 ? path : path + url.slice(q);
  const h = req.headers;
  if (hasDuplicateHost(req)) return refuse(snap, t0, req, res, DUPLICATE_HOST);
  if (h.host !== undefined && !validHost(h.host)) return refuse(snap, t0, req, res, BAD_HOST);
  const te = h['transfer-encoding'];
  if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
    // RFC 9112 §6.1: a coding the gateway does not understand. The body is not read.
    res.shouldKeepAlive = false;
    return refuse(snap, t0, req, res, UNKNOWN_CODING);
  }
  if (upgrade !== undefined) {
    const length = h['content-length'];
    if (te !== undefined || (length !== undefined && length !== '0')) {
      return refuse(snap, t0, req, res, UPGRADE_WITH_BODY);
    }
  }
  // Hygiene first: host and header matchers see only what the gateway vouches for.
  snap.hygiene(req, upgrade !== undefined);
  const found = snap.table.lookup(req.method ?? 'GET', path, req);
  if (found.kind === 'none') return refuse(snap, t0, req, res, ROUTE_NOT_FOUND);
  if (found.kind === 'method') return refuse(snap, t0, req, res, snap.methodError(found.allow));
  const route = found.route;
  const chains = snap.chains.get(route)!;
  let chain = chains.http;
  // Only a WebSocket upgrade opens a tunnel, and only on a route that accepts them.
  const tunnel = upgrade !== undefined && chains.upgrade !== undefined && isWebSocket(h.upgrade);
  if (tunnel) chain = chains.upgrade!;
  else if (upgrade !== undefined) {
    // RFC 9110 §7.8: a server may ignore Upgrade. Any other upgrade (h2c, a route without
    // WebSockets) is answered as plain HTTP on the socket, which closes after the answer.
    delete h.connection;
    delete h.upgrade;
  }
  const ex = new Exchange(snap, route, found.segments, req, res, exit);
  if (tunnel) {
    ex.socket = upgrade;
    ex.head = head;
  }
  snap.enter();
  setExchange(req, ex);
  res.on('close', onResClose); // res is this request's alone: no once() wrapper
  chain(req, res);
}

/** Answers a request no route took, and tells those who listen. */
function refuse(
  snap: Snapshot,
  t0: number,
  req: IncomingMessage,
  res: ServerResponse,
  error: GatewayError,
): void {
  sendProblem(req, res, error);
  if (snap.unrouted.listening) {
    snap.unrouted.emit({ req, status: error.status, error, durationMs: performance.now() - t0 });
  }
}
