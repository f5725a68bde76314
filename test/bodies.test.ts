import crypto from 'node:crypto';
import http from 'node:http';
import zlib from 'node:zlib';
import express from 'express';
import qs from 'qs';
import request from 'supertest';
import { rawRequest } from './helpers/raw';
import {
  listen,
  startEcho,
  startGateway,
  type Echo,
  type GatewayHarness,
  type Running,
} from './helpers/servers';

const FIVE_MB = 5 * 1024 * 1024;
const big = crypto.randomBytes(FIVE_MB);
const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

let echo: Running;
let hasher: Running;
let gw: GatewayHarness;

beforeAll(async () => {
  echo = await startEcho('echo');
  // Hashes the request body; GET /download sends 5 MB.
  hasher = await listen((req, res) => {
    if (req.url === '/download') {
      res.setHeader('content-type', 'application/octet-stream');
      res.end(big);
      return;
    }
    const h = crypto.createHash('sha256');
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      h.update(c);
    });
    req.on('end', () => res.end(JSON.stringify({ length: n, sha: h.digest('hex') })));
  });
  gw = await startGateway({
    services: { echo: { targets: [echo.url] }, hasher: { targets: [hasher.url] } },
    routes: [
      { path: '/small/**', service: 'echo', bodyLimit: 1024 },
      { path: '/hash/**', service: 'hasher', stripPrefix: '/hash' },
      { path: '/**', service: 'echo' },
    ],
  });
});
afterAll(async () => {
  await gw.close();
  await hasher.close();
  await echo.close();
});

describe('streamed bodies', () => {
  it('streams a 5 MB request body upstream intact', async () => {
    const res = await request(gw.running.server)
      .post('/api/hash/upload')
      .set('content-type', 'application/octet-stream')
      .send(big);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toEqual({ length: FIVE_MB, sha: sha(big) });
  });

  it('streams a 5 MB response body back intact', async () => {
    const body = await new Promise<Buffer>((resolve, reject) => {
      http
        .get(`${gw.url}/hash/download`, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve(Buffer.concat(chunks)));
          res.on('error', reject);
        })
        .on('error', reject);
    });
    expect(body.length).toBe(FIVE_MB);
    expect(sha(body)).toBe(sha(big));
  });

  it('streams a chunked request body upstream', async () => {
    const res = await rawRequest(
      gw.running.port,
      'POST /api/hash/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
    );
    expect(JSON.parse(res.body)).toEqual({ length: 11, sha: sha(Buffer.from('hello world')) });
  });
});

describe('body limit', () => {
  it('answers 413 for a Content-Length over the route limit, without calling the upstream', async () => {
    let hits = 0;
    const count = () => hits++;
    echo.server.on('request', count);
    try {
      const res = await request(gw.running.server).post('/api/small/x').send(Buffer.alloc(2048));
      expect(res.status).toBe(413);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(hits).toBe(0);
    } finally {
      echo.server.off('request', count);
    }
  });

  it('answers 413 for a chunked body that grows past the limit', async () => {
    const chunk = 'a'.repeat(600);
    const res = await rawRequest(
      gw.running.port,
      `POST /api/small/x HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`,
    );
    expect(res.status).toBe(413);
    expect(res.headers.connection).toBe('close');
  });

  it.each(['Content-Length', 'Transfer-Encoding'])(
    'still answers 413 when Connection names %s',
    async (name) => {
      const body = 'a'.repeat(2048);
      const framing =
        name === 'Content-Length'
          ? `Content-Length: ${body.length}\r\n\r\n${body}`
          : `Transfer-Encoding: chunked\r\n\r\n800\r\n${body}\r\n0\r\n\r\n`;
      const res = await rawRequest(
        gw.running.port,
        `POST /api/small/x HTTP/1.1\r\nHost: g\r\nConnection: ${name}\r\n${framing}`,
      );
      expect(res.status).toBe(413);
    },
  );

  it('passes a body within the limit', async () => {
    const res = await request(gw.running.server).post('/api/small/x').send(Buffer.alloc(1000));
    expect((res.body as Echo).bodyLength).toBe(1000);
  });
});

describe('a body parser before the gateway', () => {
  let parsed: GatewayHarness;
  beforeAll(async () => {
    parsed = await startGateway(
      { services: { echo: { targets: [echo.url] } }, routes: [{ path: '/**', service: 'echo' }] },
      {
        before: (app) => {
          app.use(express.json());
          app.use(express.urlencoded({ extended: true }));
        },
      },
    );
  });
  afterAll(() => parsed.close());

  it('re-sends a parsed JSON body with a correct Content-Length', async () => {
    const res = await request(parsed.running.server)
      .post('/api/x')
      .send({ name: 'Zoë', n: [1, 2] });
    const seen = res.body as Echo;
    expect(JSON.parse(seen.body)).toEqual({ name: 'Zoë', n: [1, 2] });
    expect(Number(seen.headers['content-length'])).toBe(Buffer.byteLength(seen.body));
    expect(seen.bodyLength).toBe(Buffer.byteLength(seen.body));
  });

  it('re-sends a parsed urlencoded body', async () => {
    const res = await request(parsed.running.server)
      .post('/api/x')
      .type('form')
      .send('a=1&b=two+words&c=x&c=y&d[e]=f');
    const seen = res.body as Echo;
    const params = new URLSearchParams(seen.body);
    expect(params.get('a')).toBe('1');
    expect(params.get('b')).toBe('two words');
    expect(params.getAll('c')).toEqual(['x', 'y']);
    expect(params.get('d[e]')).toBe('f');
    expect(Number(seen.headers['content-length'])).toBe(seen.bodyLength);
  });

  it('re-sends an extended urlencoded body (Express 4 default) so that it parses back the same', async () => {
    const res = await request(parsed.running.server)
      .post('/api/x')
      .type('form')
      .send('a[0][b]=1&a[1][b]=2&c=3&d[e][f]=g');
    const seen = res.body as Echo;
    expect(qs.parse(seen.body)).toEqual({
      a: [{ b: '1' }, { b: '2' }],
      c: '3',
      d: { e: { f: 'g' } },
    });
    expect(Number(seen.headers['content-length'])).toBe(seen.bodyLength);
  });

  it('re-sends a gzip body the parser inflated without its Content-Encoding', async () => {
    // node:http, not supertest: superagent would JSON-encode a Buffer sent as JSON.
    const gz = zlib.gzipSync(JSON.stringify({ z: 1 }));
    const text = await new Promise<string>((resolve, reject) => {
      const req = http.request(
        `${parsed.url}/x`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        },
        (res) => {
          let out = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (out += c));
          res.on('end', () => resolve(out));
        },
      );
      req.on('error', reject);
      req.end(gz);
    });
    const seen = JSON.parse(text) as Echo;
    expect(JSON.parse(seen.body)).toEqual({ z: 1 });
    expect(seen.headers['content-encoding']).toBeUndefined();
  });

  it('refuses with 500 a parsed form body it cannot encode faithfully', async () => {
    let hits = 0;
    const count = () => hits++;
    echo.server.on('request', count);
    try {
      // qs keeps a[100] as an object key; encoded again it would parse as an array index.
      const res = await request(parsed.running.server).post('/api/x').type('form').send('a[100]=z');
      expect(res.status).toBe(500);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(hits).toBe(0);
    } finally {
      echo.server.off('request', count);
    }
  });

  it('refuses with 500, never an empty body, when the body was read and req.body is unset', async () => {
    let hits = 0;
    const count = () => hits++;
    echo.server.on('request', count);
    const drained = await startGateway(
      { services: { echo: { targets: [echo.url] } }, routes: [{ path: '/**', service: 'echo' }] },
      {
        before: (app) =>
          app.use((req, _res, next) => {
            req.resume(); // reads the body and keeps nothing
            req.once('end', () => next());
          }),
      },
    );
    try {
      const res = await request(drained.running.server).post('/api/x').send('some bytes');
      expect(res.status).toBe(500);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(hits).toBe(0);
    } finally {
      echo.server.off('request', count);
      await drained.close();
    }
  });

  it('still streams bodies the parser did not take', async () => {
    const res = await request(parsed.running.server)
      .post('/api/x')
      .set('content-type', 'text/plain')
      .send('raw text');
    expect((res.body as Echo).body).toBe('raw text');
  });
});

describe('a simple urlencoded parser before the gateway (extended: false)', () => {
  it('re-sends bracketed names as the pairs the client sent', async () => {
    const flat = await startGateway(
      { services: { echo: { targets: [echo.url] } }, routes: [{ path: '/**', service: 'echo' }] },
      { before: (app) => app.use(express.urlencoded({ extended: false })) },
    );
    try {
      const res = await request(flat.running.server)
        .post('/api/x')
        .type('form')
        .send('b[c]=3&a=1&a=2&d=%20x');
      expect(res.status).toBe(200);
      const params = new URLSearchParams((res.body as Echo).body);
      expect([...params]).toEqual([
        ['b[c]', '3'],
        ['a', '1'],
        ['a', '2'],
        ['d', ' x'],
      ]);
    } finally {
      await flat.close();
    }
  });
});
