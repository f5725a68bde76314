import { randomBytes } from 'node:crypto';
import {
  createRouter,
  type RetryEvent,
  type RetryOptions,
  type RouterOptions,
} from '@turnpike/router';
import {
  answeredBy,
  attemptsAfterEach,
  hold,
  reply,
  resetAfterBody,
  send,
  settled,
  walkFunction,
  type Answer,
  type Walk,
  type WalkService,
} from './helpers/attempts';
import { configErrorOf } from './helpers/expectations';
import { startRouter, type OutcomeLog, type RouterHarness } from './helpers/outcomes';
import { waitFor } from './helpers/servers';
import { blackHole, deadPort, rawUpstream } from './helpers/upstreams';

const { closers, up, walkRouter } = attemptsAfterEach();

/** The URL of a port nothing listens on. */
async function dead(): Promise<string> {
  return `http://127.0.0.1:${await deadPort()}`;
}

/** {@link walkRouter} (one catch-all route), its retry events recorded. */
async function routerOver(
  urls: readonly string[],
  service: WalkService = {},
  router: Partial<RouterOptions> = {},
): Promise<{ h: RouterHarness; picker: Walk; log: OutcomeLog; retries: RetryEvent[] }> {
  const harness = await walkRouter(urls, service, router);
  const retries: RetryEvent[] = [];
  harness.h.router.onRetry((e) => retries.push(e));
  return { ...harness, retries };
}

describe('default retries (no `retries` key): a try refused before any byte was sent', () => {
  it('a GET to a refused target is retried once on another target', async () => {
    const b = await up('b');
    const { h, picker, retries } = await routerOver([await dead(), b.url]);
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('b');
    expect(b.hits).toHaveLength(1);
    await settled(picker, 2);
    expect(picker.started).toEqual([picker.targets[0]!.url, b.url]);
    expect(retries).toHaveLength(1);
  });

  it('a POST with a small body is retried, and its body arrives intact at the second target', async () => {
    const b = await up('b');
    const { h } = await routerOver([await dead(), b.url]);
    const body = JSON.stringify({ order: 42, items: ['a', 'b'] });
    const res = await send(`${h.url}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      body,
    });
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('b');
    expect(b.hits).toHaveLength(1);
    expect(b.hits[0]!.method).toBe('POST');
    expect(b.hits[0]!.url).toBe('/orders');
    expect(b.hits[0]!.body.toString('utf8')).toBe(body);
  });

  it('only once: two refused targets in a row give 502, the third gets nothing', async () => {
    const c = await up('c');
    const { h, picker } = await routerOver([await dead(), await dead(), c.url]);
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(502);
    expect(c.hits).toHaveLength(0);
    await settled(picker, 2);
    expect(picker.started).toHaveLength(2);
  });

  it('a status is not retried by default (only refusals are)', async () => {
    const a = await up('a', reply(503));
    const b = await up('b');
    const { h } = await routerOver([a.url, b.url]);
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(503);
    expect(answeredBy(res)).toBe('a');
    expect(b.hits).toHaveLength(0);
  });

  it('`retries: false` disables it: 502, the second target gets nothing', async () => {
    const b = await up('b');
    const { h, picker, retries } = await routerOver([await dead(), b.url], { retries: false });
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(502);
    expect(b.hits).toHaveLength(0);
    await settled(picker, 1);
    expect(picker.started).toHaveLength(1);
    expect(retries).toHaveLength(0);
  });
});

describe('configured retries', () => {
  it('a GET to a refused target succeeds on another', async () => {
    const b = await up('b');
    const { h } = await routerOver([await dead(), b.url], { retries: { attempts: 2 } });
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('b');
  });

  it('a GET answered 503 is retried; the client gets the second 200, never the 503 head', async () => {
    const a = await up('a', reply(503, { 'x-from-first': 'yes' }));
    const b = await up('b');
    const { h } = await routerOver([a.url, b.url], { retries: { attempts: 2 } });
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('b');
    expect(res.headers['x-from-first']).toBeUndefined();
    expect(res.headers['x-upstream']).toBe('b');
    expect(a.hits).toHaveLength(1);
    expect(b.hits).toHaveLength(1);
  });

  it.each([502, 504])('%i is retried by default statuses', async (status) => {
    const a = await up('a', reply(status));
    const b = await up('b');
    const { h } = await routerOver([a.url, b.url], { retries: { attempts: 2 } });
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('b');
  });

  it('500 is not in the default statuses', async () => {
    const a = await up('a', reply(500));
    const b = await up('b');
    const { h } = await routerOver([a.url, b.url], { retries: { attempts: 2 } });
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(500);
    expect(b.hits).toHaveLength(0);
  });

  it('`statuses: [500]` retries 500 and not 503', async () => {
    const a500 = await up('a500', reply(500));
    const b = await up('b');
    const first = await routerOver([a500.url, b.url], {
      retries: { attempts: 2, statuses: [500] },
    });
    const retried = await send(`${first.h.url}/x`);
    expect(retried.status).toBe(200);
    expect(answeredBy(retried)).toBe('b');

    const a503 = await up('a503', reply(503));
    const c = await up('c');
    const second = await routerOver([a503.url, c.url], {
      retries: { attempts: 2, statuses: [500] },
    });
    const kept = await send(`${second.h.url}/x`);
    expect(kept.status).toBe(503);
    expect(answeredBy(kept)).toBe('a503');
    expect(c.hits).toHaveLength(0);
  });

  it('`attempts` bounds the retries: attempts 2 → at most 3 tries', async () => {
    const ups = await Promise.all(['a', 'b', 'c', 'd'].map((n) => up(n, reply(503))));
    const { h, picker } = await routerOver(
      ups.map((u) => u.url),
      { retries: { attempts: 2 } },
    );
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(503);
    expect(answeredBy(res)).toBe('c');
    expect(ups.map((u) => u.hits.length)).toEqual([1, 1, 1, 0]);
    await settled(picker, 3);
    expect(picker.started).toHaveLength(3);
  });

  it('the function form of `target` gets the targets earlier tries used', async () => {
    const b = await up('b');
    const first = await dead();
    const fn = walkFunction([first, b.url]);
    const h = await startRouter({
      services: { svc: { target: fn.pick, retries: { attempts: 2 } } },
      routes: [{ path: '/**', service: 'svc' }],
    });
    closers.push(() => h.close());
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(fn.picks).toEqual([
      { tried: [], picked: first },
      { tried: [first], picked: b.url },
    ]);
  });
});

describe('after bytes were sent, only idempotent methods are retried', () => {
  const body = 'name=turnpike&size=small';
  const post = (method = 'POST', headers: Record<string, string> = {}) => ({
    method,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'content-length': String(body.length),
      ...headers,
    },
    body,
  });

  it('a POST whose body the first upstream read before resetting is not retried: 502', async () => {
    const a = await up('a', resetAfterBody);
    const b = await up('b');
    const { h } = await routerOver([a.url, b.url], { retries: { attempts: 2 } });
    const res = await send(`${h.url}/x`, post());
    expect(res.status).toBe(502);
    expect(a.hits).toHaveLength(1);
    expect(a.hits[0]!.body.toString()).toBe(body);
    expect(b.hits).toHaveLength(0);
  });

  it('a POST answered 503 is not retried: the client gets the 503', async () => {
    const a = await up('a', reply(503));
    const b = await up('b');
    const { h } = await routerOver([a.url, b.url], { retries: { attempts: 2 } });
    const res = await send(`${h.url}/x`, post());
    expect(res.status).toBe(503);
    expect(answeredBy(res)).toBe('a');
    expect(b.hits).toHaveLength(0);
  });

  it('an Idempotency-Key alone does not make a POST retried (idempotencyKey defaults to false)', async () => {
    const a = await up('a', reply(503));
    const b = await up('b');
    const { h } = await routerOver([a.url, b.url], { retries: { attempts: 2 } });
    const res = await send(`${h.url}/x`, post('POST', { 'idempotency-key': 'k-1' }));
    expect(res.status).toBe(503);
    expect(b.hits).toHaveLength(0);
  });

  it.each<[string, Answer]>([
    ['answered 503', reply(503)],
    ['reset after its body', resetAfterBody],
  ])(
    'with `idempotencyKey: true`, a POST with an Idempotency-Key %s is retried',
    async (_label, answer) => {
      const a = await up('a', answer);
      const b = await up('b');
      const { h } = await routerOver([a.url, b.url], {
        retries: { attempts: 2, idempotencyKey: true },
      });
      const res = await send(`${h.url}/x`, post('POST', { 'idempotency-key': 'k-1' }));
      expect(res.status).toBe(200);
      expect(answeredBy(res)).toBe('b');
      expect(b.hits).toHaveLength(1);
      expect(b.hits[0]!.body.toString()).toBe(body);
      expect(b.hits[0]!.headers['idempotency-key']).toBe('k-1');
    },
  );

  it('with `idempotencyKey: true`, a POST without the header is still not retried', async () => {
    const a = await up('a', reply(503));
    const b = await up('b');
    const { h } = await routerOver([a.url, b.url], {
      retries: { attempts: 2, idempotencyKey: true },
    });
    const res = await send(`${h.url}/x`, post());
    expect(res.status).toBe(503);
    expect(b.hits).toHaveLength(0);
  });

  it.each(['PUT', 'DELETE'])('%s reset after its body is retried, body intact', async (method) => {
    const a = await up('a', resetAfterBody);
    const b = await up('b');
    const { h } = await routerOver([a.url, b.url], { retries: { attempts: 2 } });
    const res = await send(`${h.url}/x`, post(method));
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('b');
    expect(b.hits).toHaveLength(1);
    expect(b.hits[0]!.method).toBe(method);
    expect(b.hits[0]!.body.toString()).toBe(body);
  });

  it('a GET reset before the head is retried', async () => {
    const a = await up('a', resetAfterBody);
    const b = await up('b');
    const { h } = await routerOver([a.url, b.url], { retries: { attempts: 2 } });
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('b');
  });
});

describe('never once the response head reached the client', () => {
  it('a 200 head and part of the body, then the socket destroyed: a cut-off response, one try', async () => {
    const a = await rawUpstream((s) =>
      s.once('data', () => {
        s.write(
          'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\npartial',
        );
        // Give the head and the first bytes a turn to reach the client before the cut.
        setImmediate(() => s.destroy());
      }),
    );
    closers.push(() => a.close());
    const b = await up('b');
    const { h, picker, log, retries } = await routerOver([a.url, b.url], {
      retries: { attempts: 2 },
    });
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(res.clean).toBe(false);
    expect(res.body.length).toBeLessThan(100);
    expect(b.hits).toHaveLength(0);
    await waitFor(() => log.list.length > 0);
    await settled(picker, 1);
    expect(picker.started).toEqual([a.url]);
    expect(retries).toHaveLength(0);
    expect(log.list[0]!.kind).toBe('cut-off');
    expect(log.list[0]!.attempts).toHaveLength(1);
  });
});

describe('body replay', () => {
  it('a 10 KiB POST body is replayed byte-exact on the second target', async () => {
    const b = await up('b');
    const { h } = await routerOver([await dead(), b.url], { retries: { attempts: 2 } });
    const body = randomBytes(10 * 1024);
    const res = await send(`${h.url}/upload`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': body.length },
      body,
    });
    expect(res.status).toBe(200);
    expect(b.hits).toHaveLength(1);
    expect(b.hits[0]!.complete).toBe(true);
    expect(b.hits[0]!.body.equals(body)).toBe(true);
  });

  it('a 1 MB POST (over bodyLimit, streamed) to a refused target is not replayed: 502', async () => {
    const b = await up('b');
    const { h, picker } = await routerOver([await dead(), b.url]);
    const body = randomBytes(1024 * 1024);
    const res = await send(`${h.url}/upload`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': body.length },
      body,
    });
    expect(res.error).toBeUndefined();
    expect(res.status).toBe(502);
    expect(b.hits).toHaveLength(0);
    await settled(picker, 1);
    expect(picker.started).toHaveLength(1);
  });

  it('a body over a configured `bodyLimit` (but buffered) is not replayed either', async () => {
    const b = await up('b');
    const { h } = await routerOver([await dead(), b.url], {
      retries: { attempts: 2, bodyLimit: 1024 },
    });
    const body = randomBytes(4096);
    const res = await send(`${h.url}/upload`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': body.length },
      body,
    });
    expect(res.status).toBe(502);
    expect(b.hits).toHaveLength(0);
  });
});

describe('the retry budget', () => {
  it('bounds the retries of a service whose every target fails', async () => {
    const a = await up('a', reply(503));
    const b = await up('b', reply(503));
    const budget = { ratio: 0.1, minPerSecond: 1, windowMs: 1000 };
    const { h, picker } = await routerOver([a.url, b.url], {
      retries: { attempts: 3, budget, backoff: { baseMs: 1, maxMs: 2 } },
    });
    const requests = 50;
    const began = Date.now();
    for (let i = 0; i < requests; i++) {
      expect((await send(`${h.url}/x`)).status).toBe(503);
    }
    const elapsed = Date.now() - began;
    await settled(picker, requests);
    const tries = a.hits.length + b.hits.length;
    expect(picker.started).toHaveLength(tries);
    // Retries stay within ratio × requests plus minPerSecond × the window's seconds for any
    // one window. The run may span more than one window (each adding its minimum once more),
    // so the slack is one minimum per window the run touched: ceil(elapsed / window) + 1.
    const windows = Math.ceil(elapsed / budget.windowMs) + 1;
    const bound =
      requests * (1 + budget.ratio) + budget.minPerSecond * (budget.windowMs / 1000) * windows;
    expect(tries).toBeLessThanOrEqual(bound);
    expect(tries).toBeLessThan(2 * requests); // without a budget it would be 4 × requests
    expect(tries).toBeGreaterThan(requests); // the budget allows some retries: there were some
  });
});

describe('the deadline bounds every try', () => {
  it('timeoutMs 300 with perTryTimeoutMs 100 and 5 attempts, every target hanging: 504, ≤ 4 tries', async () => {
    const ups = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((n) => up(n, hold)));
    const { h, picker, retries } = await routerOver(
      ups.map((u) => u.url),
      { timeoutMs: 300, retries: { attempts: 5, perTryTimeoutMs: 100 } },
    );
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(504);
    await settled(picker);
    expect(picker.started.length).toBeLessThanOrEqual(4);
    // The per-try timeout did fire: more than one try.
    expect(picker.started.length).toBeGreaterThanOrEqual(2);
    // One event per retry; the last may have been announced just before the deadline passed
    // in its backoff, with no try started after it.
    expect(retries.length).toBeGreaterThanOrEqual(picker.started.length - 1);
    expect(retries.length).toBeLessThanOrEqual(picker.started.length);
    for (const e of retries) expect(e.reason).toBe('timeout');
  });

  it('every target a black hole (no connection ever opens): 504, ≤ 4 tries', async () => {
    const holes = await Promise.all([blackHole(), blackHole()]);
    for (const hole of holes) closers.push(() => hole.close());
    const { h, picker } = await routerOver(
      holes.map((x) => x.url),
      { timeoutMs: 300, retries: { attempts: 5, perTryTimeoutMs: 100 } },
    );
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(504);
    await settled(picker);
    expect(picker.started.length).toBeGreaterThanOrEqual(1);
    expect(picker.started.length).toBeLessThanOrEqual(4);
  });

  it('`perTryTimeoutMs` alone: the first target hangs, the second answers the GET', async () => {
    const a = await up('a', hold);
    const b = await up('b');
    const { h, picker, retries, log } = await routerOver([a.url, b.url], {
      retries: { perTryTimeoutMs: 100 },
    });
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('b');
    // The timed-out try was abandoned: its upstream request went away unanswered.
    await waitFor(() => a.hits[0]?.closed === true);
    expect(a.hits[0]!.aborted).toBe(true);
    await settled(picker, 2);
    expect(picker.ended).toEqual([
      { url: a.url, end: 'timeout', status: 0 },
      { url: b.url, end: 'complete', status: 200 },
    ]);
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({ reason: 'timeout', status: 0, retry: 1 });
    await waitFor(() => log.list.length > 0);
    expect(log.list[0]!.attempts.map((x) => x.end)).toEqual(['timeout', 'complete']);
  });
});

describe('backoff', () => {
  it('retry n waits a random delay within [0, min(maxMs, baseMs × 2^(n-1))]', async () => {
    const urls = await Promise.all([dead(), dead(), dead(), dead()]);
    const baseMs = 20;
    const maxMs = 50;
    const { h, retries } = await routerOver(urls, {
      retries: { attempts: 3, backoff: { baseMs, maxMs } },
    });
    const requests = 5;
    for (let i = 0; i < requests; i++) expect((await send(`${h.url}/x`)).status).toBe(502);
    expect(retries).toHaveLength(requests * 3);
    for (const e of retries) {
      expect(e.retry).toBeGreaterThanOrEqual(1);
      expect(e.retry).toBeLessThanOrEqual(3);
      expect(e.delayMs).toBeGreaterThanOrEqual(0);
      expect(e.delayMs).toBeLessThanOrEqual(Math.min(maxMs, baseMs * 2 ** (e.retry - 1)));
    }
    expect(retries.map((e) => e.retry)).toEqual(
      Array.from({ length: requests }, () => [1, 2, 3]).flat(),
    );
    // Full jitter: not every one of 15 delays is 0 (nor all the same).
    expect(new Set(retries.map((e) => e.delayMs)).size).toBeGreaterThan(1);
  });
});

describe('onRetry', () => {
  it('one event per retry: the target that failed, the reason, the retry number', async () => {
    const first = await dead();
    const a = await up('a', reply(503));
    const b = await up('b');
    const { h, retries, log } = await routerOver([first, a.url, b.url], {
      retries: { attempts: 2 },
    });
    const res = await send(`${h.url}/x`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('b');
    expect(retries).toHaveLength(2);
    expect(retries.map((e) => [e.target.url, e.reason, e.status, e.retry])).toEqual([
      [first, 'refused', 0, 1],
      [a.url, 'status', 503, 2],
    ]);
    await waitFor(() => log.list.length > 0);
    for (const e of retries) {
      expect(e.service).toBe('svc');
      expect(e.route.path).toBe('/**');
      expect(e.req).toBe(log.list[0]!.req);
      expect(typeof e.delayMs).toBe('number');
    }
  });

  it('the disposer stops the events', async () => {
    const b = await up('b');
    const { h, retries } = await routerOver([await dead(), b.url]);
    const more: RetryEvent[] = [];
    const dispose = h.router.onRetry((e) => more.push(e));
    expect((await send(`${h.url}/x`)).status).toBe(200);
    expect(more).toHaveLength(1);
    dispose();
    expect((await send(`${h.url}/x`)).status).toBe(200);
    expect(more).toHaveLength(1);
    expect(retries).toHaveLength(2);
  });
});

describe('outcome and target picker reports', () => {
  it('one outcome per request, with the last try and every try in order', async () => {
    const first = await dead();
    const a = await up('a', reply(503));
    const b = await up('b');
    const { h, picker, log } = await routerOver([first, a.url, b.url], {
      retries: { attempts: 2 },
    });
    expect((await send(`${h.url}/x`)).status).toBe(200);
    await settled(picker, 3);
    await h.close(); // anything still pending reports now
    expect(log.list).toHaveLength(1);
    const outcome = log.list[0]!;
    expect(outcome.kind).toBe('complete');
    expect(outcome.status).toBe(200);
    expect(outcome.attempts.map((x) => x.target.url)).toEqual([first, a.url, b.url]);
    expect(outcome.attempts.map((x) => x.status)).toEqual([0, 503, 200]);
    const [refused, status, done] = outcome.attempts;
    expect(refused!.end).toBe('refused');
    expect(refused!.headAt).toBe(0);
    // A try whose status was retried: the router did not forward it. The core's AttemptEnd
    // names this case 'cancelled'; a router that read it whole may call it 'complete'.
    expect(['cancelled', 'complete']).toContain(status!.end);
    expect(done!.end).toBe('complete');
    expect(done!.phase).toBe('done');
    expect(outcome.attempt).toEqual(done);
    const starts = outcome.attempts.map((x) => x.startedAt);
    expect([...starts].sort((x, y) => x - y)).toEqual(starts);
  });

  it('a request whose every try failed: one outcome, the last failure', async () => {
    const { h, log } = await routerOver([await dead(), await dead()]);
    expect((await send(`${h.url}/x`)).status).toBe(502);
    await waitFor(() => log.list.length > 0);
    await h.close();
    expect(log.list).toHaveLength(1);
    expect(log.list[0]!.kind).toBe('refused');
    expect(log.list[0]!.status).toBe(502);
    expect(log.list[0]!.attempts.map((x) => x.end)).toEqual(['refused', 'refused']);
  });

  it('attemptStarted and attemptEnded once per try, with the end of each', async () => {
    const first = await dead();
    const a = await up('a', reply(503));
    const b = await up('b');
    const { h, picker } = await routerOver([first, a.url, b.url], { retries: { attempts: 2 } });
    expect((await send(`${h.url}/x`)).status).toBe(200);
    await settled(picker, 3);
    expect(picker.started).toEqual([first, a.url, b.url]);
    expect(picker.ended.map((e) => [e.url, e.status])).toEqual([
      [first, 0],
      [a.url, 503],
      [b.url, 200],
    ]);
    expect(picker.ended[0]!.end).toBe('refused');
    expect(['cancelled', 'complete']).toContain(picker.ended[1]!.end);
    expect(picker.ended[2]!.end).toBe('complete');
    expect(picker.picks.map((p) => p.tried)).toEqual([[], [first], [first, a.url]]);
  });
});

describe('config errors name the path', () => {
  const build = (retries: unknown) => () =>
    createRouter({
      services: { svc: { target: 'http://127.0.0.1:1', retries: retries as RetryOptions } },
      routes: [{ path: '/**', service: 'svc' }],
    });

  it.each<[string, unknown, RegExp]>([
    ['attempts 0', { attempts: 0 }, /^services\.svc\.retries\.attempts$/],
    ['attempts -1', { attempts: -1 }, /^services\.svc\.retries\.attempts$/],
    ['attempts 1.5', { attempts: 1.5 }, /^services\.svc\.retries\.attempts$/],
    ['statuses with 404', { statuses: [502, 404] }, /^services\.svc\.retries\.statuses(\[1\])?$/],
    ['statuses with 99', { statuses: [99] }, /^services\.svc\.retries\.statuses(\[0\])?$/],
    ['statuses with 600', { statuses: [600] }, /^services\.svc\.retries\.statuses(\[0\])?$/],
    ['budget.ratio -0.1', { budget: { ratio: -0.1 } }, /^services\.svc\.retries\.budget\.ratio$/],
    ['budget.ratio 1.5', { budget: { ratio: 1.5 } }, /^services\.svc\.retries\.budget\.ratio$/],
    [
      'backoff.maxMs below baseMs',
      { backoff: { baseMs: 100, maxMs: 50 } },
      /^services\.svc\.retries\.backoff\.maxMs$/,
    ],
    ['perTryTimeoutMs 0', { perTryTimeoutMs: 0 }, /^services\.svc\.retries\.perTryTimeoutMs$/],
    ['an unknown key', { attempt: 2 }, /^services\.svc\.retries\.attempt$/],
    ['retries true', true, /^services\.svc\.retries$/],
  ])('%s', (_label, retries, path) => {
    expect(configErrorOf(build(retries)).path).toMatch(path);
  });

  it('valid settings are accepted', () => {
    const h = build({
      attempts: 1,
      statuses: [500, 599],
      idempotencyKey: true,
      bodyLimit: 1024,
      backoff: { baseMs: 10, maxMs: 10 },
      perTryTimeoutMs: 50,
      budget: { ratio: 1, minPerSecond: 1, windowMs: 1000 },
    })();
    closers.push(() => h.close());
    const off = build(false)();
    closers.push(() => off.close());
    const zero = build({ budget: { ratio: 0 } })();
    closers.push(() => zero.close());
  });
});
