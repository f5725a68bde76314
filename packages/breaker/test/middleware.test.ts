import http, { type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express, type Response } from 'express';
import {
  bulkhead,
  circuitBreaker,
  type CircuitBreakerMiddleware,
  type FallbackReason,
  type StateChangeEvent,
} from '@turnpike/breaker';
import { closedAfterEach } from '../../../test/helpers/expectations';

const servers = closedAfterEach();

/** Starts an app on 127.0.0.1, port 0; closed (with its connections) after the test. */
async function start(app: Express): Promise<string> {
  const server = http.createServer(app);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

interface Sent {
  /** The request, to abort it. */
  req: http.ClientRequest;
  /** The response; rejects when the connection breaks. */
  done: Promise<Reply>;
}

/** One request on a connection of its own (no keep-alive pool in the way). */
function send(url: string, method = 'GET'): Sent {
  const req = http.request(url, { method, agent: false });
  const done = new Promise<Reply>((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
  });
  req.end();
  return { req, done };
}

function get(url: string, method = 'GET'): Promise<Reply> {
  return send(url, method).done;
}

/** 'answered' or 'broken': for a request the test expects to break. */
function outcome(sent: Sent): Promise<'answered' | 'broken'> {
  return sent.done.then(
    () => 'answered' as const,
    () => 'broken' as const,
  );
}

/** Polls `check` until it holds; fails after `deadlineMs`. */
async function until(check: () => boolean, deadlineMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`until: ${what} not met within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function problemOf(reply: Reply): { type: string; status: number; title: string } {
  expect(reply.headers['content-type']).toBe('application/problem+json');
  return JSON.parse(reply.body) as { type: string; status: number; title: string };
}

function expectCircuitOpen(reply: Reply): void {
  expect(reply.status).toBe(503);
  expect(problemOf(reply)).toMatchObject({
    type: 'urn:turnpike:problem:circuit-open',
    status: 503,
  });
  expect(reply.headers['retry-after']).toMatch(/^[1-9][0-9]*$/);
}

function expectOverloaded(reply: Reply): void {
  expect(reply.status).toBe(503);
  expect(problemOf(reply)).toMatchObject({ type: 'urn:turnpike:problem:overloaded', status: 503 });
  expect(reply.headers['retry-after']).toBe('1');
}

/** Waits for an open circuit's half-open time (by the clock, not a fixed sleep). */
async function untilDue(mw: CircuitBreakerMiddleware, deadlineMs = 3000): Promise<void> {
  const s = mw.breaker.state;
  if (s.kind !== 'open') throw new Error(`expected an open circuit, got ${s.kind}`);
  await until(() => Date.now() >= s.until, deadlineMs, 'the half-open time');
}

/** A handler whose answer the test sets as it goes; 'hold' keeps the response for the test. */
function scripted(): {
  handler: (req: express.Request, res: Response) => void;
  calls: () => number;
  set(mode: number | 'hold' | 'destroy'): void;
  held: Response[];
} {
  let mode: number | 'hold' | 'destroy' = 200;
  let calls = 0;
  const held: Response[] = [];
  return {
    handler: (_req, res) => {
      calls++;
      if (mode === 'hold') held.push(res);
      else if (mode === 'destroy') res.destroy();
      else res.status(mode).json({ status: mode });
    },
    calls: () => calls,
    set: (m) => (mode = m),
    held,
  };
}

async function statuses(url: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await get(url)).status);
  return out;
}

describe('circuitBreaker() in a plain Express app', () => {
  it('opens after 3 failures: 503 circuit-open with Retry-After, and the handler is not called', async () => {
    const h = scripted();
    const mw = circuitBreaker({ failureThreshold: 3, resetTimeoutMs: 60_000 });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';

    h.set(500);
    expect(await statuses(url, 3)).toEqual([500, 500, 500]);
    await until(() => mw.breaker.state.kind === 'open', 2000, 'the circuit to open');
    expect(h.calls()).toBe(3);

    const reply = await get(url);
    expectCircuitOpen(reply);
    expect(reply.headers['retry-after']).toBe('60');
    expect(Number(reply.headers['content-length'])).toBe(Buffer.byteLength(reply.body));
    expect(h.calls()).toBe(3);

    const again = await get(url);
    expectCircuitOpen(again);
    expect(h.calls()).toBe(3);
  });

  it('a success in between resets the count', async () => {
    const h = scripted();
    const mw = circuitBreaker({ failureThreshold: 3, resetTimeoutMs: 60_000 });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    for (const status of [500, 500, 200, 500, 500, 200]) {
      h.set(status);
      expect((await get(url)).status).toBe(status);
    }
    expect(mw.breaker.state.kind).toBe('closed');
  });

  it('4xx answers never open it', async () => {
    const h = scripted();
    const mw = circuitBreaker({ failureThreshold: 3, resetTimeoutMs: 60_000 });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    for (const status of [404, 400, 429, 403, 409, 404, 429]) {
      h.set(status);
      expect((await get(url)).status).toBe(status);
    }
    expect(mw.breaker.state.kind).toBe('closed');
    expect(h.calls()).toBe(7);
  });

  it('a handler that answers 501 does not count', async () => {
    const h = scripted();
    const mw = circuitBreaker({ failureThreshold: 3, resetTimeoutMs: 60_000 });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    h.set(501);
    expect(await statuses(url, 5)).toEqual([501, 501, 501, 501, 501]);
    expect(mw.breaker.state.kind).toBe('closed');
    expect(h.calls()).toBe(5);
  });

  it('counts only the failureStatuses given', async () => {
    const h = scripted();
    const mw = circuitBreaker({
      failureThreshold: 2,
      resetTimeoutMs: 60_000,
      failureStatuses: [429],
    });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    h.set(500);
    expect(await statuses(url, 3)).toEqual([500, 500, 500]);
    expect(mw.breaker.state.kind).toBe('closed');
    h.set(429);
    expect(await statuses(url, 2)).toEqual([429, 429]);
    await until(() => mw.breaker.state.kind === 'open', 2000, 'the circuit to open');
    expectCircuitOpen(await get(url));
  });

  it('a response the handler destroys counts as a failure', async () => {
    const h = scripted();
    const mw = circuitBreaker({ failureThreshold: 3, resetTimeoutMs: 60_000 });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    h.set('destroy');
    for (let i = 0; i < 3; i++) expect(await outcome(send(url))).toBe('broken');
    await until(() => mw.breaker.state.kind === 'open', 2000, 'the circuit to open');
    expectCircuitOpen(await get(url));
    expect(h.calls()).toBe(3);
  });

  it('a client that leaves while the handler hangs counts as a failure', async () => {
    const h = scripted();
    const mw = circuitBreaker({ failureThreshold: 3, resetTimeoutMs: 60_000 });
    const events: StateChangeEvent[] = [];
    mw.breaker.onStateChange((e) => events.push(e));
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    h.set('hold');
    for (let i = 1; i <= 3; i++) {
      const sent = send(url);
      const broken = outcome(sent);
      await until(() => h.held.length === i, 2000, 'the handler to be called');
      sent.req.destroy();
      expect(await broken).toBe('broken');
      await until(() => h.held[i - 1]!.destroyed, 2000, 'the server to see the client leave');
    }
    await until(() => mw.breaker.state.kind === 'open', 2000, 'the circuit to open');
    expect(events.map((e) => e.reason)).toEqual(['failure-threshold']);
    expectCircuitOpen(await get(url));
    expect(h.calls()).toBe(3);
  });

  it('half-open after the reset time: one probe passes, its success closes the circuit', async () => {
    const h = scripted();
    const mw = circuitBreaker({ failureThreshold: 3, resetTimeoutMs: 200 });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';

    h.set(500);
    await statuses(url, 3);
    await until(() => mw.breaker.state.kind === 'open', 2000, 'the circuit to open');
    const early = await get(url);
    expectCircuitOpen(early);
    expect(early.headers['retry-after']).toBe('1');

    await untilDue(mw);
    h.set('hold');
    const probe = send(url);
    await until(() => h.held.length === 1, 2000, 'the probe to reach the handler');
    expect(mw.breaker.state.kind).toBe('half-open');
    expect(h.calls()).toBe(4);

    // Only one probe at a time: the others still get the open answer.
    expectCircuitOpen(await get(url));
    expect(h.calls()).toBe(4);

    h.held[0]!.status(200).json({ probe: 'ok' });
    expect((await probe.done).status).toBe(200);
    await until(() => mw.breaker.state.kind === 'closed', 2000, 'the circuit to close');

    h.set(200);
    expect(await statuses(url, 3)).toEqual([200, 200, 200]);
    expect(h.calls()).toBe(7);
  });

  it('half-open: a probe failure reopens the circuit for longer', async () => {
    const h = scripted();
    const mw = circuitBreaker({ failureThreshold: 3, resetTimeoutMs: 200 });
    const opened: { wait: number; reason: string; opens: number }[] = [];
    mw.breaker.onStateChange((e) => {
      if (e.state.kind === 'open') {
        opened.push({ wait: e.state.until - Date.now(), reason: e.reason, opens: e.state.opens });
      }
    });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';

    h.set(500);
    await statuses(url, 3);
    await until(() => mw.breaker.state.kind === 'open', 2000, 'the circuit to open');
    await untilDue(mw);

    expect((await get(url)).status).toBe(500); // the probe
    expect(h.calls()).toBe(4);
    await until(() => opened.length === 2, 2000, 'the circuit to reopen');
    expect(opened.map((o) => [o.reason, o.opens])).toEqual([
      ['failure-threshold', 1],
      ['probe-failure', 2],
    ]);
    expect(opened[0]!.wait).toBeLessThanOrEqual(200);
    expect(opened[0]!.wait).toBeGreaterThan(150);
    expect(opened[1]!.wait).toBeLessThanOrEqual(400);
    expect(opened[1]!.wait).toBeGreaterThan(350);

    expectCircuitOpen(await get(url));
    expect(h.calls()).toBe(4);

    // The second open time passes too: the next probe's success closes it.
    await untilDue(mw);
    h.set(200);
    expect((await get(url)).status).toBe(200);
    await until(() => mw.breaker.state.kind === 'closed', 2000, 'the circuit to close');
  });

  it('a probe whose client leaves reopens the circuit', async () => {
    const h = scripted();
    const mw = circuitBreaker({ failureThreshold: 1, resetTimeoutMs: 200 });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    h.set(500);
    await get(url);
    await until(() => mw.breaker.state.kind === 'open', 2000, 'the circuit to open');
    await untilDue(mw);
    h.set('hold');
    const probe = send(url);
    const broken = outcome(probe);
    await until(() => h.held.length === 1, 2000, 'the probe to reach the handler');
    probe.req.destroy();
    expect(await broken).toBe('broken');
    await until(() => mw.breaker.state.kind === 'open', 2000, 'the circuit to reopen');
    const s = mw.breaker.state;
    expect(s.kind === 'open' && s.opens).toBe(2);
  });

  it('.breaker.open() and .close() act on the middleware', async () => {
    const h = scripted();
    const mw = circuitBreaker({ resetTimeoutMs: 60_000 });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    mw.breaker.open(120_000);
    const reply = await get(url);
    expectCircuitOpen(reply);
    expect(reply.headers['retry-after']).toBe('120');
    mw.breaker.close();
    expect((await get(url)).status).toBe(200);
    expect(h.calls()).toBe(1);
    await mw.close();
  });

  it('guards only the handlers after it', async () => {
    const h = scripted();
    const mw = circuitBreaker({ failureThreshold: 1, resetTimeoutMs: 60_000 });
    const app = express();
    app.get('/x', mw, h.handler);
    app.get('/other', (_req, res) => void res.json({ other: true }));
    const url = await start(app);
    mw.breaker.open();
    expectCircuitOpen(await get(url + '/x'));
    expect((await get(url + '/other')).status).toBe(200);
  });
});

describe('circuitBreaker() fallbacks', () => {
  it('a static response: its body, with X-Turnpike-Fallback: circuit-open', async () => {
    const h = scripted();
    const body = { reports: [], stale: true, note: 'caf\u00e9' };
    const mw = circuitBreaker({
      failureThreshold: 2,
      resetTimeoutMs: 60_000,
      fallback: { status: 200, headers: { 'X-Source': 'cache' }, body },
    });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    h.set(502);
    expect(await statuses(url, 2)).toEqual([502, 502]);
    await until(() => mw.breaker.state.kind === 'open', 2000, 'the circuit to open');

    const reply = await get(url);
    expect(reply.status).toBe(200);
    expect(reply.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(reply.headers['x-source']).toBe('cache');
    expect(reply.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(reply.body)).toEqual(body);
    expect(Number(reply.headers['content-length'])).toBe(Buffer.byteLength(reply.body));
    expect(Number(reply.headers['content-length'])).toBe(Buffer.byteLength(JSON.stringify(body)));
    expect(h.calls()).toBe(2);
  });

  it('a static response to HEAD has the headers and no body', async () => {
    const h = scripted();
    const body = { stale: true };
    const mw = circuitBreaker({ fallback: { status: 203, body } });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    mw.breaker.open(60_000);
    const reply = await get(url, 'HEAD');
    expect(reply.status).toBe(203);
    expect(reply.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(reply.headers['content-type']).toMatch(/^application\/json/);
    expect(Number(reply.headers['content-length'])).toBe(Buffer.byteLength(JSON.stringify(body)));
    expect(reply.body).toBe('');
    expect(h.calls()).toBe(0);
  });

  it('a static text response is text/plain; its own Content-Type is kept', async () => {
    const app = express();
    const text = circuitBreaker({ fallback: { status: 503, body: 'try later' } });
    const typed = circuitBreaker({
      fallback: { headers: { 'Content-Type': 'text/html' }, body: '<p>later</p>' },
    });
    app.get('/text', text, (_req, res) => void res.send('live'));
    app.get('/typed', typed, (_req, res) => void res.send('live'));
    const url = await start(app);
    text.breaker.open(60_000);
    typed.breaker.open(60_000);
    const a = await get(url + '/text');
    expect(a.status).toBe(503);
    expect(a.headers['content-type']).toMatch(/^text\/plain/);
    expect(a.body).toBe('try later');
    const b = await get(url + '/typed');
    expect(b.status).toBe(200);
    expect(b.headers['content-type']).toBe('text/html');
    expect(b.body).toBe('<p>later</p>');
    expect(b.headers['x-turnpike-fallback']).toBe('circuit-open');
  });

  it("a function gets (req, res, 'circuit-open'), with the marker header already set", async () => {
    const h = scripted();
    const seen: { url: string | undefined; reason: FallbackReason; marker: unknown }[] = [];
    const mw = circuitBreaker({
      fallback: (req, res: ServerResponse, reason) => {
        seen.push({ url: req.url, reason, marker: res.getHeader('X-Turnpike-Fallback') });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ fallback: reason }));
      },
    });
    const app = express();
    app.get('/x', mw, h.handler);
    const url = (await start(app)) + '/x';
    mw.breaker.open(60_000);
    const reply = await get(url + '?q=1');
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toEqual({ fallback: 'circuit-open' });
    expect(reply.headers['x-turnpike-fallback']).toBe('circuit-open');
    expect(seen).toEqual([{ url: '/x?q=1', reason: 'circuit-open', marker: 'circuit-open' }]);
    expect(h.calls()).toBe(0);
  });

  it('an async function may answer later', async () => {
    const mw = circuitBreaker({
      fallback: async (_req, res) => {
        await new Promise((r) => setImmediate(r));
        res.end('later');
      },
    });
    const app = express();
    app.get('/x', mw, (_req, res) => void res.send('live'));
    const url = (await start(app)) + '/x';
    mw.breaker.open(60_000);
    const reply = await get(url);
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('later');
  });

  it('a function that throws: 500 problem+json, logged, and the app goes on', async () => {
    const logged: string[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: (message: string) => void logged.push(message),
    };
    let fallbacks = 0;
    const mw = circuitBreaker({
      logger,
      fallback: () => {
        fallbacks++;
        throw new Error('fallback broke');
      },
    });
    const app = express();
    app.get('/x', mw, (_req, res) => void res.send('live'));
    app.get('/other', (_req, res) => void res.json({ other: true }));
    const url = await start(app);
    mw.breaker.open(60_000);

    const reply = await get(url + '/x');
    expect(reply.status).toBe(500);
    expect(problemOf(reply)).toMatchObject({ type: 'urn:turnpike:problem:internal', status: 500 });
    expect(reply.body).not.toContain('fallback broke');
    expect(reply.headers['x-turnpike-fallback']).toBeUndefined();
    expect(logged).toEqual(['fallback failed']);

    // The next requests still work: the same route answers again, the others as ever.
    const next = await get(url + '/x');
    expect(next.status).toBe(500);
    expect((await get(url + '/other')).status).toBe(200);
    mw.breaker.close();
    expect((await get(url + '/x')).body).toBe('live');
    expect(fallbacks).toBe(2);
  });

  it('an async function that rejects: 500 problem+json too', async () => {
    const logged: string[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: (message: string) => void logged.push(message),
    };
    const mw = circuitBreaker({
      logger,
      fallback: async () => {
        await Promise.resolve();
        throw new Error('async fallback broke');
      },
    });
    const app = express();
    app.get('/x', mw, (_req, res) => void res.send('live'));
    const url = (await start(app)) + '/x';
    mw.breaker.open(60_000);
    const reply = await get(url);
    expect(reply.status).toBe(500);
    expect(problemOf(reply)).toMatchObject({ type: 'urn:turnpike:problem:internal' });
    expect(logged).toEqual(['fallback failed']);
    expect((await get(url)).status).toBe(500);
  });
});

/** A handler that holds every request until the test releases it. */
function holding(): {
  handler: (req: express.Request, res: Response) => void;
  held: Response[];
  release(i: number, status?: number): void;
  releaseAll(): void;
} {
  const held: Response[] = [];
  const released = new Set<number>();
  const release = (i: number, status = 200): void => {
    if (released.has(i)) return;
    released.add(i);
    held[i]!.status(status).send(`done ${i}`);
  };
  return {
    handler: (_req, res) => void held.push(res),
    held,
    release,
    releaseAll: () => held.forEach((_res, i) => release(i)),
  };
}

describe('bulkhead() in a plain Express app', () => {
  async function setup(): Promise<{
    url: string;
    mw: ReturnType<typeof bulkhead>;
    h: ReturnType<typeof holding>;
  }> {
    const h = holding();
    const mw = bulkhead({ maxConcurrent: 2, maxQueue: 1, queueTimeoutMs: 300 });
    const app = express();
    app.get('/b', mw, h.handler);
    const url = (await start(app)) + '/b';
    return { url, mw, h };
  }

  /** Two requests holding the places, a third waiting. */
  async function fill(url: string, mw: ReturnType<typeof bulkhead>, h: ReturnType<typeof holding>) {
    const first = [send(url), send(url)];
    await until(() => h.held.length === 2, 2000, 'two requests to reach the handler');
    expect(mw.bulkhead.active).toBe(2);
    const third = send(url);
    await until(() => mw.bulkhead.queued === 1, 2000, 'the third request to queue');
    return { first, third };
  }

  it('a third request waits, and runs once one of the first two is released', async () => {
    const { url, mw, h } = await setup();
    const { first, third } = await fill(url, mw, h);
    expect(h.held).toHaveLength(2);

    h.release(1);
    expect((await first[1]!.done).body).toBe('done 1');
    await until(() => h.held.length === 3, 2000, 'the queued request to reach the handler');
    expect(mw.bulkhead.queued).toBe(0);
    expect(mw.bulkhead.active).toBe(2);

    h.releaseAll();
    expect((await first[0]!.done).body).toBe('done 0');
    const r3 = await third.done;
    expect(r3.status).toBe(200);
    expect(r3.body).toBe('done 2');
    await until(() => mw.bulkhead.active === 0, 2000, 'every place to be freed');
  });

  it('a fourth request (queue full) gets 503 overloaded with Retry-After 1', async () => {
    const { url, mw, h } = await setup();
    const { first, third } = await fill(url, mw, h);

    const fourth = await get(url);
    expectOverloaded(fourth);
    expect(h.held).toHaveLength(2);
    expect(mw.bulkhead.queued).toBe(1);

    h.releaseAll();
    await Promise.all(first.map((s) => s.done));
    await until(() => h.held.length === 3, 2000, 'the queued request to reach the handler');
    h.releaseAll();
    expect((await third.done).status).toBe(200);
    await until(() => mw.bulkhead.active === 0, 2000, 'every place to be freed');
  });

  it('a request queued past queueTimeoutMs gets 503 overloaded', async () => {
    const { url, mw, h } = await setup();
    const queuedAt = Date.now();
    const { first, third } = await fill(url, mw, h);
    const r3 = await third.done;
    expectOverloaded(r3);
    expect(Date.now() - queuedAt).toBeGreaterThanOrEqual(250);
    expect(mw.bulkhead.queued).toBe(0);
    expect(h.held).toHaveLength(2); // it never reached the handler

    h.releaseAll();
    await Promise.all(first.map((s) => s.done));
    await until(() => mw.bulkhead.active === 0, 2000, 'every place to be freed');
    expect(h.held).toHaveLength(2);
  });

  it('a queued client that leaves frees its place in the queue', async () => {
    const { url, mw, h } = await setup();
    const { first, third } = await fill(url, mw, h);
    const left = outcome(third);
    third.req.destroy();
    expect(await left).toBe('broken');
    await until(() => mw.bulkhead.queued === 0, 2000, 'the queue place to be freed');
    expect(mw.bulkhead.active).toBe(2);

    // A later request can queue in its place (not refused), and runs when a place frees.
    const later = send(url);
    await until(() => mw.bulkhead.queued === 1, 2000, 'the later request to queue');
    h.release(0);
    await until(() => h.held.length === 3, 2000, 'the later request to reach the handler');
    h.releaseAll();
    expect((await later.done).body).toBe('done 2');
    await Promise.all(first.map((s) => s.done));
    await until(() => mw.bulkhead.active === 0, 2000, 'every place to be freed');
    expect(h.held).toHaveLength(3); // the one that left never ran
  });

  it('a running client that leaves frees its place', async () => {
    const { url, mw, h } = await setup();
    const { first, third } = await fill(url, mw, h);
    const left = outcome(first[0]!);
    first[0]!.req.destroy();
    expect(await left).toBe('broken');
    await until(() => h.held.length === 3, 2000, 'the queued request to take the freed place');
    expect(mw.bulkhead.active).toBe(2);
    expect(mw.bulkhead.queued).toBe(0);
    h.releaseAll();
    await Promise.all([first[1]!.done, third.done]);
    await until(() => mw.bulkhead.active === 0, 2000, 'every place to be freed');
  });

  it('a fallback answers instead of the 503, with reason overloaded', async () => {
    const h = holding();
    const reasons: FallbackReason[] = [];
    const mw = bulkhead({
      maxConcurrent: 1,
      fallback: (_req, res, reason) => {
        reasons.push(reason);
        res.end('busy');
      },
    });
    const app = express();
    app.get('/b', mw, h.handler);
    const url = (await start(app)) + '/b';
    const first = send(url);
    await until(() => h.held.length === 1, 2000, 'the first request to reach the handler');
    const second = await get(url);
    expect(second.status).toBe(200);
    expect(second.body).toBe('busy');
    expect(second.headers['x-turnpike-fallback']).toBe('overloaded');
    expect(reasons).toEqual(['overloaded']);
    h.releaseAll();
    await first.done;
    await until(() => mw.bulkhead.active === 0, 2000, 'every place to be freed');
  });

  it('close() answers every waiting request 503', async () => {
    const { url, mw, h } = await setup();
    const { first, third } = await fill(url, mw, h);
    mw.close();
    expectOverloaded(await third.done);
    expect(mw.bulkhead.queued).toBe(0);
    h.releaseAll();
    await Promise.all(first.map((s) => s.done));
    await until(() => mw.bulkhead.active === 0, 2000, 'every place to be freed');
  });
});

describe('circuitBreaker() in front of bulkhead()', () => {
  it("does not count the bulkhead's refusals: the service was not called", async () => {
    const h = holding();
    const guard = circuitBreaker({ failureThreshold: 2 });
    const cap = bulkhead({ maxConcurrent: 1 });
    const app = express();
    app.get('/b', guard, cap, h.handler);
    const url = (await start(app)) + '/b';
    const busy = send(url);
    await until(() => h.held.length === 1, 2000, 'the first request to reach the handler');
    for (let i = 0; i < 4; i++) expectOverloaded(await get(url));
    expect(guard.breaker.state.kind).toBe('closed');
    // Real failures still count.
    h.release(0, 500);
    expect((await busy.done).status).toBe(500);
    const second = send(url);
    await until(() => h.held.length === 2, 2000, 'the second request to reach the handler');
    h.release(1, 500);
    expect((await second.done).status).toBe(500);
    await until(() => guard.breaker.state.kind === 'open', 2000, 'the circuit to open');
  });
});
