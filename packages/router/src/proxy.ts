import type { Agent, ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex, Stream } from 'node:stream';
import { createProxyMiddleware, type Plugin } from 'http-proxy-middleware';
import type { Target } from '@turnpike/core';

/** http-proxy-middleware's proxy server (node-http-proxy), as handed to its plugins. */
export type ProxyServer = Parameters<Plugin>[0];

/** The per-target options passed to the proxy server; built once per target. */
export interface ProxyCallOptions {
  target: Target;
  agent: Agent;
  changeOrigin: boolean;
  selfHandleResponse: true;
  toProxy: true;
  xfwd: false;
  buffer?: Stream;
}

/** The listeners the router installs on the proxy server, once. */
export interface ProxyListeners {
  proxyReq: (proxyReq: ClientRequest, req: IncomingMessage, res: ServerResponse) => void;
  proxyReqWs: (proxyReq: ClientRequest, req: IncomingMessage, socket: Duplex) => void;
  proxyRes: (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => void;
}

/**
 * Creates http-proxy-middleware's proxy server with none of its default plugins (their
 * per-request logging walks the agent's sockets), and our listeners installed through its
 * plugin hook. The router calls `web()` / `ws()` on it with options built once per target:
 * http-proxy-middleware's own middleware wrapper would copy its options and await a router
 * on every request, and cannot carry a per-request body stream.
 */
export function createProxyServer(listeners: ProxyListeners): ProxyServer {
  let server: ProxyServer | undefined;
  const install: Plugin = (proxyServer) => {
    server = proxyServer;
    // http-proxy's deleteLength pass sets Content-Length: 0 on a DELETE or OPTIONS without
    // one and deletes Transfer-Encoding, while the chunked body is still piped: the upstream
    // would read the body as a second request on a pooled connection (request smuggling).
    // Node frames the forwarded request from the headers hygiene left, body or not.
    const passes = proxyServer as unknown as { webPasses: { name: string }[] };
    passes.webPasses = passes.webPasses.filter((pass) => pass.name !== 'deleteLength');
    proxyServer.on('proxyReq', listeners.proxyReq);
    proxyServer.on('proxyReqWs', listeners.proxyReqWs as never);
    proxyServer.on('proxyRes', listeners.proxyRes as never);
    // Errors arrive through the per-call callback; this keeps any stray one from throwing.
    proxyServer.on('error', () => {});
  };
  // The target here is never used: every call passes its own.
  createProxyMiddleware({ target: 'http://127.0.0.1', ejectPlugins: true, plugins: [install] });
  return server!;
}
