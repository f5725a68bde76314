import http, { type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  GatewayError,
  PROBLEM_CONTENT_TYPE,
  sendProblem,
  type RequestWithId,
} from '@turnpike/core';
import { closedAfterEach } from '../../../test/helpers/expectations';

type Handler = (req: RequestWithId, res: ServerResponse) => void;

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

const servers = closedAfterEach();

/** A real server on 127.0.0.1, port 0; resolves to its port. */
async function serve(handler: Handler): Promise<number> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function request(port: number, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: '/x', agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Serves one request that answers with sendProblem(error), optionally with a request id. */
async function problemFor(error: unknown, options: { id?: string; method?: string } = {}) {
  const port = await serve((req, res) => {
    if (options.id !== undefined) req.id = options.id;
    sendProblem(req, res, error);
  });
  return request(port, options.method);
}

describe('sendProblem', () => {
  it('answers with content-type application/problem+json', async () => {
    const reply = await problemFor(new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND'));
    expect(PROBLEM_CONTENT_TYPE).toBe('application/problem+json');
    expect(reply.headers['content-type']).toBe('application/problem+json');
  });

  it('answers with the status of the error', async () => {
    const reply = await problemFor(new GatewayError('ERR_TURNPIKE_UPSTREAM_TIMEOUT'));
    expect(reply.status).toBe(504);
  });

  it('sends type, title, status and detail in the body', async () => {
    const reply = await problemFor(new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND'));
    expect(JSON.parse(reply.body)).toEqual({
      type: 'urn:turnpike:problem:route-not-found',
      title: 'Not Found',
      status: 404,
      detail: 'No route matches the request.',
    });
  });

  it('sends a given detail in the body', async () => {
    const error = new GatewayError('ERR_TURNPIKE_BAD_REQUEST', { detail: 'Two Host headers.' });
    const reply = await problemFor(error);
    expect((JSON.parse(reply.body) as { detail: string }).detail).toBe('Two Host headers.');
  });

  it('sends the request id in the body when the request has one', async () => {
    const reply = await problemFor(new GatewayError('ERR_TURNPIKE_NO_TARGET'), { id: 'req-42' });
    expect((JSON.parse(reply.body) as { requestId?: string }).requestId).toBe('req-42');
  });

  it('sends no requestId field when the request has no id', async () => {
    const reply = await problemFor(new GatewayError('ERR_TURNPIKE_NO_TARGET'));
    expect(JSON.parse(reply.body)).not.toHaveProperty('requestId');
  });

  it('sends a content-length that matches the body', async () => {
    const reply = await problemFor(new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND'));
    expect(Number(reply.headers['content-length'])).toBe(Buffer.byteLength(reply.body));
  });

  it('marks the response as not cacheable', async () => {
    const reply = await problemFor(new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND'));
    expect(reply.headers['cache-control']).toBe('no-store');
  });

  it('sends the Allow header of a method-not-allowed error', async () => {
    const error = new GatewayError('ERR_TURNPIKE_METHOD_NOT_ALLOWED', {
      headers: { allow: 'GET, HEAD, POST' },
    });
    const reply = await problemFor(error);
    expect(reply.status).toBe(405);
    expect(reply.headers.allow).toBe('GET, HEAD, POST');
  });

  it('sends the Retry-After header of the error', async () => {
    const error = new GatewayError('ERR_TURNPIKE_NO_TARGET', { headers: { 'Retry-After': '7' } });
    const reply = await problemFor(error);
    expect(reply.headers['retry-after']).toBe('7');
  });

  test.each<[string, unknown]>([
    ['an Error', new Error('db password is hunter2')],
    ['a TypeError', new TypeError('Cannot read properties of undefined (reading "hunter2")')],
    ['a thrown string', 'hunter2'],
    ['an object that looks like a problem', { status: 418, title: 'hunter2', detail: 'hunter2' }],
    ['undefined', undefined],
  ])('answers %s with a generic 500', async (_label, error) => {
    const reply = await problemFor(error);
    expect(reply.status).toBe(500);
    expect(JSON.parse(reply.body)).toEqual({
      type: 'urn:turnpike:problem:internal',
      title: 'Internal Server Error',
      status: 500,
      detail: 'The gateway failed to handle the request.',
    });
  });

  it('never sends the message or the stack of a non-GatewayError', async () => {
    const error = new Error('secret-message-hunter2');
    const reply = await problemFor(error);
    expect(reply.body).not.toContain('secret-message-hunter2');
    expect(reply.body).not.toContain('problem.test');
    expect(reply.body).not.toContain(' at ');
  });

  it('never sends the cause of a GatewayError', async () => {
    const cause = new Error('connect ECONNREFUSED 10.1.2.3:8080');
    const reply = await problemFor(new GatewayError('ERR_TURNPIKE_UPSTREAM_FAILED', { cause }));
    expect(reply.status).toBe(502);
    expect(reply.body).not.toContain('10.1.2.3');
    expect(reply.body).not.toContain('ECONNREFUSED');
  });

  it('sends no body to a HEAD request', async () => {
    const reply = await problemFor(new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND'), {
      method: 'HEAD',
    });
    expect(reply.status).toBe(404);
    expect(reply.headers['content-type']).toBe('application/problem+json');
    expect(reply.body).toBe('');
  });

  it('gives a HEAD request the content-length a GET would get', async () => {
    const error = new GatewayError('ERR_TURNPIKE_ROUTE_NOT_FOUND');
    const get = await problemFor(error);
    const head = await problemFor(error, { method: 'HEAD' });
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(get.body)));
  });

  it('destroys the connection when the response has already started', async () => {
    let started: ((value: { req: RequestWithId; res: ServerResponse }) => void) | undefined;
    const inFlight = new Promise<{ req: RequestWithId; res: ServerResponse }>(
      (resolve) => (started = resolve),
    );
    const port = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      started!({ req, res });
    });

    const outcome = await new Promise<{ status: number; body: string; complete: boolean }>(
      (resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.once('data', (chunk: string) => {
            body += chunk;
            res.on('data', (more: string) => (body += more));
            // The first bytes have arrived: now fail the response on the server side.
            void inFlight.then(({ req: serverReq, res: serverRes }) =>
              sendProblem(serverReq, serverRes, new GatewayError('ERR_TURNPIKE_UPSTREAM_FAILED')),
            );
          });
          res.on('error', () => {});
          res.on('close', () => resolve({ status: res.statusCode!, body, complete: res.complete }));
        });
        req.on('error', reject);
      },
    );

    expect(outcome.status).toBe(200);
    expect(outcome.complete).toBe(false);
    expect(outcome.body).toBe('partial');
  });
});
