import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { assignRequestId } from '@turnpike/metrics';
import { assignRequestId as fromGateway } from '@turnpike/gateway';
import { closedAfterEach } from '../../../test/helpers/expectations';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const servers = closedAfterEach();

/** What assignRequestId did to one real request, as seen by the server and the client. */
interface Assigned {
  /** The return value. */
  returned: string;
  /** `req.id` afterwards. */
  reqId: string | undefined;
  /** The request's `x-request-id` header afterwards (sent upstream). */
  upstream: string | string[] | undefined;
  /** The request's raw header lines named x-request-id, as the client sent them. */
  sent: string[];
  /** The `x-request-id` response header the client received. */
  response: string | string[] | undefined;
}

async function assign(
  headers: OutgoingHttpHeaders,
  options: { withResponse?: boolean } = {},
): Promise<Assigned> {
  const server = http.createServer((req: IncomingMessage & { id?: string }, res) => {
    const sent = req.rawHeaders.filter(
      (_v, i, raw) => i % 2 === 1 && /^x-request-id$/i.test(raw[i - 1]!),
    );
    const returned = assignRequestId(req, options.withResponse === false ? undefined : res);
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({ returned, reqId: req.id, upstream: req.headers['x-request-id'], sent }),
    );
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/', agent: false, headers },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () =>
          resolve({
            ...(JSON.parse(body) as Omit<Assigned, 'response'>),
            response: res.headers['x-request-id'],
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('assignRequestId', () => {
  it('keeps a safe client id as req.id', async () => {
    const out = await assign({ 'X-Request-ID': 'abc-123_DEF.4' });
    expect(out.reqId).toBe('abc-123_DEF.4');
  });

  it('returns the id it assigned', async () => {
    const out = await assign({ 'X-Request-ID': 'abc-123_DEF.4' });
    expect(out.returned).toBe('abc-123_DEF.4');
  });

  it('sends a kept id upstream in the request header', async () => {
    const out = await assign({ 'X-Request-ID': 'abc-123_DEF.4' });
    expect(out.upstream).toBe('abc-123_DEF.4');
  });

  it('sends a kept id back in the response header', async () => {
    const out = await assign({ 'X-Request-ID': 'abc-123_DEF.4' });
    expect(out.response).toBe('abc-123_DEF.4');
  });

  it('keeps a safe id of exactly 128 characters', async () => {
    const id = 'a'.repeat(128);
    expect((await assign({ 'X-Request-ID': id })).reqId).toBe(id);
  });

  it('keeps a one-character id', async () => {
    expect((await assign({ 'X-Request-ID': '7' })).reqId).toBe('7');
  });

  it('replaces an id of 129 characters with a new UUID', async () => {
    const out = await assign({ 'X-Request-ID': 'a'.repeat(129) });
    expect(out.reqId).toMatch(UUID);
  });

  test.each<[string, string]>([
    ['a space', 'abc def'],
    ['a slash', 'abc/def'],
    ['a colon', 'abc:def'],
    ['a semicolon', 'abc;def'],
    ['a quote', 'abc"def'],
    ['angle brackets', '<script>'],
    ['a percent sign', 'abc%0d%0a'],
    ['a latin-1 letter', 'caf\u00e9'],
    ['a comma', 'abc,def'],
  ])('replaces an id with %s with a new UUID', async (_label, id) => {
    const out = await assign({ 'X-Request-ID': id });
    expect(out.reqId).toMatch(UUID);
  });

  it('sends the replacement id upstream and back to the client', async () => {
    const out = await assign({ 'X-Request-ID': 'bad id' });
    expect([out.upstream, out.response]).toEqual([out.reqId, out.reqId]);
  });

  it('replaces two X-Request-ID headers (joined by a comma) with a new UUID', async () => {
    const out = await assign({ 'X-Request-ID': ['first', 'second'] });
    expect(out.sent).toEqual(['first', 'second']);
    expect(out.reqId).toMatch(UUID);
  });

  it('replaces an empty id with a new UUID', async () => {
    const out = await assign({ 'X-Request-ID': '' });
    expect(out.reqId).toMatch(UUID);
  });

  it('generates a UUID when the client sends no id', async () => {
    const out = await assign({});
    expect(out.reqId).toMatch(UUID);
  });

  it('generates a different UUID for each request', async () => {
    const first = await assign({});
    const second = await assign({});
    expect(first.reqId).not.toBe(second.reqId);
  });

  it('works without a response object', async () => {
    const out = await assign({ 'X-Request-ID': 'abc' }, { withResponse: false });
    expect([out.reqId, out.upstream, out.response]).toEqual(['abc', 'abc', undefined]);
  });
});

test('the gateway re-exports the request id step it moved here: the same function', () => {
  expect(fromGateway).toBe(assignRequestId);
});
