import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import WebSocket, { WebSocketServer } from 'ws';
import { createGateway, type Gateway } from '@turnpike/gateway';
import * as mount from '../src/mount';
import { closedAfterEach } from '../../../test/helpers/expectations';

const { fixedMount, isUnder } = mount;

/** Stands in for the gateway: any function identity will do for discovery. */
function target(): () => void {
  return function gateway() {};
}

describe('fixedMount: the mount prefix read from the app, without a request', () => {
  it('reads a plain mount', () => {
    const gw = target();
    const app = express();
    app.get('/before', () => {});
    app.use('/api', gw);
    expect(fixedMount(app, gw)).toEqual({ kind: 'fixed', prefix: '/api' });
  });

  it('joins the paths of nested routers', () => {
    const gw = target();
    const app = express();
    const r1 = express.Router();
    const r2 = express.Router();
    r2.use('/v1', gw);
    r1.use('/svc', r2);
    app.use('/api', r1);
    expect(fixedMount(app, gw)).toEqual({ kind: 'fixed', prefix: '/api/svc/v1' });
  });

  it('reads a root mount as the empty prefix, with or without a path', () => {
    const gw = target();
    const withPath = express();
    withPath.use('/', gw);
    const without = express();
    without.use(gw);
    expect(fixedMount(withPath, gw)).toEqual({ kind: 'fixed', prefix: '' });
    expect(fixedMount(without, gw)).toEqual({ kind: 'fixed', prefix: '' });
  });

  it('drops a trailing slash, as Express matches it', () => {
    const gw = target();
    const app = express();
    app.use('/api/', gw);
    expect(fixedMount(app, gw)).toEqual({ kind: 'fixed', prefix: '/api' });
  });

  it('keeps literal characters: dots, dashes, tildes', () => {
    const gw = target();
    const app = express();
    app.use('/my-api.v2/~x', gw);
    expect(fixedMount(app, gw)).toEqual({ kind: 'fixed', prefix: '/my-api.v2/~x' });
  });

  it.each<[string, (app: express.Express, gw: () => void) => void]>([
    ['a parameter', (app, gw) => app.use('/t/:tenant', gw)],
    ['a RegExp', (app, gw) => app.use(/^\/api/, gw)],
    ['a list of paths', (app, gw) => app.use(['/a', '/b'], gw)],
    [
      'two mounts',
      (app, gw) => {
        app.use('/a', gw);
        app.use('/b', gw);
      },
    ],
    [
      'a parameter in a parent router',
      (app, gw) => {
        const r = express.Router({ mergeParams: true });
        r.use('/api', gw);
        app.use('/:tenant', r);
      },
    ],
  ])('is dynamic for %s: Express decides per path', (_label, mountIt) => {
    const gw = target();
    const app = express();
    mountIt(app, gw);
    expect(fixedMount(app, gw).kind).toBe('dynamic');
  });

  it('is absent when the app does not mount it', () => {
    const app = express();
    app.use('/api', target());
    expect(fixedMount(app, target())).toEqual({ kind: 'absent' });
  });
});

describe('isUnder', () => {
  it.each<[string, string, boolean]>([
    ['/api', '/api', true],
    ['/api/', '/api', true],
    ['/api/x', '/api', true],
    ['/apix', '/api', false],
    ['/ap', '/api', false],
    ['/x', '', true],
  ])('%s under %j: %s', (pathname, prefix, expected) => {
    expect(isUnder(pathname, prefix)).toBe(expected);
  });
});

describe('upgrades: the mount is read once per app for a fixed prefix', () => {
  const servers = closedAfterEach();
  let upstream: http.Server;
  let wss: WebSocketServer;
  let upstreamUrl: string;
  beforeAll(async () => {
    upstream = http.createServer();
    wss = new WebSocketServer({ server: upstream });
    wss.on('connection', (socket) => socket.send('up'));
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    wss.close();
    await new Promise((resolve) => upstream.close(resolve));
  });

  async function start(mountIt: (app: express.Express, gateway: Gateway) => void) {
    const gateway = createGateway({
      services: { ws: { targets: [upstreamUrl] } },
      routes: [{ path: '/ws', service: 'ws', websocket: true }],
    });
    const app = express();
    mountIt(app, gateway);
    const server = http.createServer(app);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    gateway.attach(server);
    return { gateway, port: (server.address() as AddressInfo).port };
  }

  function message(url: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.once('message', (d: Buffer) => {
        resolve(d.toString());
        ws.close();
      });
      ws.once('error', reject);
    });
  }

  afterEach(() => jest.restoreAllMocks());

  it('reads the app once, on the first upgrade, under a plain mount', async () => {
    const { gateway, port } = await start((app, gw) => app.use('/api', gw));
    const reads = jest.spyOn(mount, 'fixedMount');
    const walks = jest.spyOn(mount, 'findMount');
    try {
      expect(await message(`ws://127.0.0.1:${port}/api/ws`)).toBe('up');
      expect(await message(`ws://127.0.0.1:${port}/api/ws?again=1`)).toBe('up');
      expect(reads).toHaveBeenCalledTimes(1);
      expect(walks).not.toHaveBeenCalled();
    } finally {
      await gateway.close();
    }
  });

  it('asks Express on every upgrade for a mount with parameters, and finds it', async () => {
    const { gateway, port } = await start((app, gw) => app.use('/t/:tenant', gw));
    const walks = jest.spyOn(mount, 'findMount');
    try {
      expect(await message(`ws://127.0.0.1:${port}/t/acme/ws`)).toBe('up');
      expect(await message(`ws://127.0.0.1:${port}/t/other/ws`)).toBe('up');
      expect(walks).toHaveBeenCalledTimes(2);
    } finally {
      await gateway.close();
    }
  });

  it('lets Express decide for a path that differs from the prefix in case only', async () => {
    const { gateway, port } = await start((app, gw) => app.use('/api', gw));
    try {
      expect(await message(`ws://127.0.0.1:${port}/API/ws`)).toBe('up');
    } finally {
      await gateway.close();
    }
  });
});
