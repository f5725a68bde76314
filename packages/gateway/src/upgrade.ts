import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { GatewayError, sendProblem } from '@turnpike/core';
import { createUpgradeResponse, type TurnpikeRouter } from '@turnpike/router';
import type { ExpressAppLike } from './mount';
import { sendNotFound, type MountedRequest } from './next';
import { assignRequestId } from '@turnpike/metrics';

/** A server's 'upgrade' listener. */
export type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** Where an upgrade's path reaches the gateway: the mount prefix, and the app it was found in. */
export interface UpgradeMount {
  mount: string;
  /** The Express app, when discovered: its request/response prototypes go onto req and res. */
  app?: ExpressAppLike;
}

/** Every Turnpike upgrade listener, so that they can tell each other from the host's. */
const turnpikeListeners = new WeakSet<object>();
/** On an upgrade request that a Turnpike listener took: the others leave it. */
const TAKEN = Symbol('turnpike.upgradeTaken');

/**
 * Node stops reading at an upgrade's head: the body is neither read into `req` nor parsed, so
 * it cannot be handed to the host as an HTTP request. Refused instead of served without it.
 */
const BODY_WITH_UPGRADE = new GatewayError('ERR_TURNPIKE_BAD_REQUEST', {
  detail: 'A request with a body cannot ask for a protocol upgrade here.',
});

/**
 * The gateway's 'upgrade' listener. An upgrade under the mount (`resolve(pathname)`) goes to
 * `router.upgrade()`, with the URL made relative as for HTTP. One outside it is the host's:
 * left to the host's own 'upgrade' listeners when it has any; when it has none, Node would
 * have emitted the request as plain HTTP had the gateway added no listener, so it is handed
 * to the server's 'request' listeners (RFC 9110 §7.8 lets a server ignore Upgrade) and the
 * socket closes after the answer, instead of staying open and unanswered.
 */
export function createUpgradeListener(
  server: Server,
  resolve: (pathname: string) => UpgradeMount | undefined,
  router: TurnpikeRouter,
): UpgradeListener {
  const onUpgrade = function turnpikeUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer) {
    // Nothing catches a throw in an 'upgrade' listener: it would end the process.
    try {
      take(req, socket, head);
    } catch {
      socket.destroy();
    }
  };
  const take = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const r = req as MountedRequest & { [TAKEN]?: true };
    if (r[TAKEN]) return;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const found = resolve(q === -1 ? url : url.slice(0, q));
    if (found === undefined) {
      if (!isLastTurnpikeListener(server, onUpgrade)) return; // the host's, or another gateway's
      r[TAKEN] = true;
      return answerAsHttp(server, req, socket);
    }
    r[TAKEN] = true;
    const { mount, app } = found;
    const rest = url.slice(mount.length);
    r.originalUrl = url;
    r.baseUrl = mount;
    req.url = rest === '' || rest.startsWith('?') ? `/${rest}` : rest;
    const res = createUpgradeResponse(req, socket);
    if (app?.request && app.response) {
      // Express-style stages (req.ip, res.status, …) work on upgrades too.
      Object.setPrototypeOf(req, app.request);
      Object.setPrototypeOf(res, app.response);
      Object.assign(req, { res, app });
    }
    assignRequestId(req, res);
    router.upgrade(req, socket, head, res);
  };
  turnpikeListeners.add(onUpgrade);
  return onUpgrade;
}

/**
 * Whether `self` decides for an upgrade no gateway took: the server has no 'upgrade'
 * listener but Turnpike's (the host's own one decides otherwise, as before), and no
 * Turnpike listener runs after this one (the last decides, once).
 */
function isLastTurnpikeListener(server: Server, self: UpgradeListener): boolean {
  const listeners = server.rawListeners('upgrade');
  return listeners.every((l) => turnpikeListeners.has(l)) && listeners.at(-1) === self;
}

function destroy(this: Duplex): void {
  this.destroy();
}

/** Serves an upgrade request as the plain HTTP request it also is: the Upgrade is ignored. */
function answerAsHttp(server: Server, req: IncomingMessage, socket: Duplex): void {
  socket.on('error', destroy); // Node's own socket error listener went with the upgrade
  const res: ServerResponse = createUpgradeResponse(req, socket); // closes once answered
  const h = req.headers;
  const length = h['content-length'];
  if (h['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) {
    assignRequestId(req, res);
    return sendProblem(req, res, BODY_WITH_UPGRADE);
  }
  delete h.upgrade;
  const listeners = server.rawListeners('request') as ((
    req: IncomingMessage,
    res: ServerResponse,
  ) => void)[];
  if (listeners.length === 0) return sendNotFound(req, res);
  for (const listener of listeners) listener.call(server, req, res);
}
