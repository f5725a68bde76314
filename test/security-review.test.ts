/**
 * Security review of the change since 20e00b1: one regression test per confirmed finding.
 * Each test fails against the code as reviewed and passes once the finding is fixed. Raw TCP
 * on 127.0.0.1, port 0; bounded waits only.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import express, { type Express } from 'express';
import qs from 'qs';
import { createGateway, type GatewayConfig } from '@turnpike/gateway';
import { rawClient, type RawClient } from './helpers/raw';
import { listen, waitFor, type Running } from './helpers/servers';
import { recordedHeader, recordingUpstream, type RecordingUpstream } from './helpers/upstreams';

const opened: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of opened.splice(0).reverse()) await close();
});

function client(port: number, text: string): RawClient {
  const c = rawClient(port, text);
  opened.push(() => c.socket.destroy());
  return c;
}

async function upstream(answerWhen: 'head' | 'complete' = 'head'): Promise<RecordingUpstream> {
  const up = await recordingUpstream(undefined, { answerWhen });
  opened.push(() => up.close());
  return up;
}

/** A host app built by `build`, the gateway on `up` created first and handed to it. */
async function host(
  up: RecordingUpstream,
  config: Omit<GatewayConfig, 'services'>,
  build: (app: Express, gateway: ReturnType<typeof createGateway>) => void,
): Promise<{ running: Running; gateway: ReturnType<typeof createGateway> }> {
  const gateway = createGateway({ services: { svc: { targets: [up.url] } }, ...config });
  const app = express();
  build(app, gateway);
  const running = await listen(http.createServer(app));
  opened.push(() => running.close());
  opened.push(() => gateway.close());
  return { running, gateway };
}

const UPGRADE_HEADERS =
  'Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
  'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

// ---- F1 (high): one upgrade request kills the process --------------------------------------

describe('F1: an upgrade with a malformed %-escape throws out of the upgrade listener (process crash)', () => {
  // In production nothing catches a throw out of Node's 'upgrade' emit: the process exits
  // (node /tmp/sec/crash-upgrade.js shows it). Here the server's upgrade listeners are called
  // inside a wrapper that records a throw instead, so jest survives to report it.
  function recordThrows(server: http.Server): unknown[] {
    const errors: unknown[] = [];
    const listeners = server.rawListeners('upgrade') as ((...a: unknown[]) => void)[];
    server.removeAllListeners('upgrade');
    server.on('upgrade', (...args: unknown[]) => {
      try {
        for (const l of listeners) l.apply(server, args);
      } catch (err) {
        errors.push(err);
        (args[1] as Duplex).destroy();
      }
    });
    return errors;
  }

  it.each([
    [
      "a mount with a parameter: app.use('/t/:tenant', gateway)",
      (app: Express, gw: express.RequestHandler) => app.use('/t/:tenant', gw),
      'GET /t/%E0%A4%A/ws HTTP/1.1',
    ],
    [
      'a fixed mount, a path differing in case, and a host middleware with params',
      (app: Express, gw: express.RequestHandler) => {
        app.use('/:a/:b', (_req, _res, next) => next());
        app.use('/api', gw);
      },
      'GET /API/%E0%A4%A HTTP/1.1',
    ],
  ])('%s', async (_label, mount, requestLine) => {
    const up = await upstream();
    const { running, gateway } = await host(
      up,
      { routes: [{ path: '/**', service: 'svc', websocket: true }] },
      (app, gw) => mount(app, gw),
    );
    gateway.attach(running.server);
    const errors = recordThrows(running.server);
    const c = client(running.port, `${requestLine}\r\n${UPGRADE_HEADERS}`);
    await waitFor(() => c.closed || c.text().length > 0 || errors.length > 0, 3000).catch(() => {});
    expect(errors.map(String)).toEqual([]);
  });
});

// ---- F2 (medium): a parsed form is re-sent as something else --------------------------------

describe('F2: a one-element array of an extended urlencoded body reaches the upstream as a string', () => {
  it("role[]=admin: the gateway side sees ['admin'], the upstream must not get role=admin", async () => {
    const up = await upstream('complete');
    let seen: unknown;
    const { running } = await host(up, { routes: [{ path: '/**', service: 'svc' }] }, (app, gw) => {
      app.use(express.urlencoded({ extended: true }));
      app.use((req, _res, next) => {
        seen = req.body; // what a host middleware (or a gateway stage) validated
        next();
      });
      app.use('/api', gw);
    });
    const body = 'role[]=admin';
    const c = client(
      running.port,
      'POST /api/users HTTP/1.1\r\nHost: x\r\n' +
        'Content-Type: application/x-www-form-urlencoded\r\n' +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    await waitFor(() => c.closed);
    expect(seen).toEqual({ role: ['admin'] });
    const sent = up.requests()[0]!.body.toString('latin1');
    // The invariant body.ts documents: the re-encoded form parses back to what the parser produced.
    expect(qs.parse(sent)).toEqual(seen);
  });
});

// ---- F3 (low/medium): route request-header transforms ignore `_` spellings -------------------

describe('F3: requestHeaders.set/remove leave the client’s "_" spelling of the header in place', () => {
  it.each([
    ['set', { set: { 'x-tenant': 'acme' } }],
    ['remove', { remove: ['x-tenant'] }],
  ])('%s x-tenant: a client X_Tenant still goes upstream', async (_label, transform) => {
    const up = await upstream();
    const { running } = await host(
      up,
      { routes: [{ path: '/**', service: 'svc', requestHeaders: transform }] },
      (app, gw) => app.use('/api', gw),
    );
    const c = client(
      running.port,
      'GET /api/x HTTP/1.1\r\nHost: x\r\nX_Tenant: evil\r\nConnection: close\r\n\r\n',
    );
    await waitFor(() => c.closed);
    const r = up.requests()[0]!;
    expect(recordedHeader(r, 'x_tenant')).toBeUndefined();
  });
});
