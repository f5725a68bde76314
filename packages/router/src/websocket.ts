import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Target } from '@turnpike/core';
import { Attempt, type Exchange } from './exchange';
import { PICKER_FAILED, failUpstream, prepare, reject, type ForwardContext } from './forward';
import { firstValue, responseHeaders } from './headers';
import type { CompiledRoute } from './route';
import type { CompiledService } from './service';
import type { RoutedRequest } from './types';
import { BAD_STATUS, upstreamFailure, type UpstreamFailure } from './upstream-errors';

const NONE: readonly Target[] = Object.freeze([]);
/** Bytes a client may send before the handshake completes (a WebSocket client sends none). */
const EARLY_MAX = 64 * 1024;

function onConnectTimeout(socket: Socket): void {
  socket.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' }));
}

/** Destroys a socket that is still connecting after `ms`. */
function armConnectTimeout(socket: Socket, ms: number): void {
  if (!socket.connecting) return;
  const timer = setTimeout(onConnectTimeout, ms, socket);
  timer.unref();
  const clear = (): void => clearTimeout(timer);
  socket.once('connect', clear);
  socket.once('close', clear);
}

/** The first token of an Upgrade header, lower case (`websocket`, `h2c` …). */
function protocolOf(value: string | string[] | undefined): string {
  return firstValue(value)?.toLowerCase() ?? '';
}

function onSocketError(this: Duplex): void {
  this.destroy();
}

/**
 * The proxy stage of a WebSocket route. The handshake goes upstream on a connection of its
 * own (never pooled): a declined upgrade's connection is closed after its answer, so no
 * later request can be read as part of it. The deadline bounds the handshake; the tunnel
 * opens only for a 101 that names the protocol the client asked for.
 */
export function upgrader(
  ctx: ForwardContext,
  route: CompiledRoute,
  service: CompiledService,
  sockets: Set<Duplex>,
): (ex: Exchange) => void {
  const fail = (ex: Exchange, failure: UpstreamFailure, cause: unknown): void =>
    failUpstream(ctx, ex, failure, cause, 'upstream handshake failed');

  /** The upstream declined the upgrade: its answer reaches the client as a plain response. */
  function onDeclined(ex: Exchange, proxyRes: IncomingMessage): void {
    const attempt = ex.attempt!;
    if (ex.state === 'settled') return void proxyRes.destroy();
    const status = proxyRes.statusCode ?? 0;
    attempt.status = status;
    attempt.headAt = performance.now();
    attempt.phase = 'head';
    if (status < 200 || status > 999) {
      proxyRes.destroy();
      return fail(ex, BAD_STATUS, new Error(`upstream status ${status}`));
    }
    const res = ex.res;
    res.writeHead(
      status,
      responseHeaders(proxyRes.rawHeaders, route.responseHeaders, (ex.req as RoutedRequest).id),
    );
    attempt.phase = 'body';
    proxyRes.on('data', (c: Buffer) => (attempt.bytesReceived += c.length));
    proxyRes.once('end', () => {
      attempt.phase = 'done';
      res.end();
      ex.settle('complete');
    });
    proxyRes.once('error', (err) => fail(ex, upstreamFailure(err), err));
    proxyRes.pipe(res, { end: false });
  }

  /** The upstream answered 101: answer the client and join the two sockets. */
  function onUpgraded(
    ex: Exchange,
    proxyRes: IncomingMessage,
    upstream: Socket,
    head: Buffer,
  ): void {
    const client = ex.socket!;
    const attempt = ex.attempt!;
    attempt.status = 101;
    attempt.headAt = performance.now();
    if (ex.state === 'settled' || client.destroyed) return void upstream.destroy();
    const asked = protocolOf(ex.req.headers.upgrade);
    if (protocolOf(proxyRes.headers.upgrade) !== asked) {
      upstream.destroy();
      return fail(ex, BAD_STATUS, new Error('the upstream switched to another protocol'));
    }
    ex.settle('upgraded');
    ex.onHandshakeEnd?.();
    // Tie the two lives together: a pipe only passes on a clean end.
    sockets.add(upstream);
    upstream.on('error', onSocketError);
    upstream.once('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    client.once('close', () => upstream.destroy());
    upstream.setTimeout(0);
    upstream.setNoDelay(true);
    if (head.length > 0) upstream.unshift(head);
    const headers = responseHeaders(
      proxyRes.rawHeaders,
      route.responseHeaders,
      (ex.req as RoutedRequest).id,
    );
    let text = `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${asked}\r\n`;
    for (let i = 0; i < headers.length; i += 2) {
      const value = headers[i + 1]!;
      for (const v of Array.isArray(value) ? value : [value])
        text += `${headers[i] as string}: ${v}\r\n`;
    }
    client.write(`${text}\r\n`);
    upstream.pipe(client).pipe(upstream);
  }

  return function upgrade(ex) {
    const req = ex.req;
    const client = ex.socket!;
    prepare(ctx, ex, service.timeoutMs);
    let target: Target | undefined;
    try {
      target = service.pick(req, NONE);
    } catch (err) {
      ctx.logger.error('target picker failed', {
        requestId: (req as RoutedRequest).id,
        service: service.name,
        error: String(err),
      });
      return reject(ex, PICKER_FAILED);
    }
    if (target === undefined) {
      return reject(ex, service.noTarget());
    }
    const h = req.headers;
    if (!service.preserveHost) h.host = target.host;
    const attempt = new Attempt(target);
    ex.picker = service.picker;
    ex.begin(attempt);
    const proxyReq: ClientRequest = (target.protocol === 'https:' ? https : http).request({
      hostname: target.hostname,
      port: target.port,
      path: target.path + req.url!,
      method: req.method,
      headers: h,
      agent: false,
    });
    ex.abort = () => proxyReq.destroy();
    proxyReq.on('socket', (socket: Socket) => armConnectTimeout(socket, service.connectTimeoutMs));
    proxyReq.once('finish', () => {
      if (attempt.phase === 'connecting') attempt.phase = 'sent';
    });
    proxyReq.on('error', (err) => fail(ex, upstreamFailure(err), err));
    proxyReq.on('response', (proxyRes: IncomingMessage) => onDeclined(ex, proxyRes));
    proxyReq.on('upgrade', (proxyRes: IncomingMessage, upstream: Socket, head: Buffer) =>
      onUpgraded(ex, proxyRes, upstream, head),
    );
    // Read the client while the handshake is pending: a FIN (a half-close) shows only to a
    // reader, and it means the client has left. Bytes sent early are kept for the tunnel.
    const early: Buffer[] = [];
    let earlySize = 0;
    const onEarly = (chunk: Buffer): void => {
      earlySize += chunk.length;
      if (earlySize > EARLY_MAX) return void client.destroy();
      early.push(chunk);
    };
    const onEnd = (): void => {
      if (ex.state === 'settled') return;
      ex.settle('client-gone');
      client.destroy();
    };
    // The bytes Node read past the request head belong to the client's stream: they go first.
    if (ex.head !== undefined && ex.head.length > 0) client.unshift(ex.head);
    client.on('data', onEarly);
    client.once('end', onEnd);
    ex.onHandshakeEnd = () => {
      client.off('data', onEarly);
      client.off('end', onEnd);
      client.pause();
      for (let i = early.length - 1; i >= 0; i--) client.unshift(early[i]!);
    };
    proxyReq.end();
  };
}
