import { isConfigError } from '@turnpike/core';
import {
  createRouter,
  type HedgeEvent,
  type HedgeOptions,
  type RetryOptions,
  type RouteOptions,
} from '@turnpike/router';
import {
  answeredBy,
  attemptsAfterEach,
  hold,
  replyAfter,
  send,
  settled,
  type Walk,
  type WalkService,
} from './helpers/attempts';
import { configErrorOf } from './helpers/expectations';
import type { OutcomeLog, RouterHarness } from './helpers/outcomes';
import { waitFor } from './helpers/servers';

const { closers, up, walkRouter } = attemptsAfterEach();

/**
 * A router at /api: route `/h/**` hedged with `hedge`, route `/**` not; both to service
 * `svc`, whose target walks `urls` (see {@link walkRouter}). Outcomes and hedge events recorded.
 */
async function hedgedRouter(
  urls: readonly string[],
  hedge: HedgeOptions,
  service: WalkService = {},
): Promise<{ h: RouterHarness; picker: Walk; log: OutcomeLog; hedges: HedgeEvent[] }> {
  const routes: RouteOptions[] = [
    { path: '/h/**', service: 'svc', hedge, name: 'hedged' },
    { path: '/**', service: 'svc', name: 'plain' },
  ];
  const harness = await walkRouter(urls, service, { routes });
  const hedges: HedgeEvent[] = [];
  harness.h.router.onHedge((e) => hedges.push(e));
  return { ...harness, hedges };
}

describe('a hedged GET or HEAD', () => {
  it('a slow first target: the second (fast) one answers, the slow request is aborted', async () => {
    const slow = await up('slow', hold);
    const fast = await up('fast');
    const { h, picker, log, hedges } = await hedgedRouter([slow.url, fast.url], { afterMs: 50 });
    const res = await send(`${h.url}/h/item`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('fast');
    expect(fast.hits).toHaveLength(1);

    // The loser's upstream request went away unanswered (its connection was closed).
    await waitFor(() => slow.hits[0]?.closed === true);
    expect(slow.hits).toHaveLength(1);
    expect(slow.hits[0]!.aborted).toBe(true);
    expect(slow.hits[0]!.res.writableEnded).toBe(false);

    expect(hedges).toHaveLength(1);
    expect(hedges[0]).toMatchObject({ service: 'svc', hedge: 1 });
    expect(hedges[0]!.target.url).toBe(fast.url);
    expect(hedges[0]!.route.name).toBe('hedged');

    await settled(picker, 2);
    expect(picker.started).toEqual([slow.url, fast.url]);
    expect(picker.ended).toHaveLength(2);
    expect(picker.ended).toContainEqual({ url: slow.url, end: 'cancelled', status: 0 });
    expect(picker.ended).toContainEqual({ url: fast.url, end: 'complete', status: 200 });

    await waitFor(() => log.list.length > 0);
    await h.close();
    expect(log.list).toHaveLength(1);
    const outcome = log.list[0]!;
    expect(outcome.kind).toBe('complete');
    expect(outcome.status).toBe(200);
    expect(outcome.attempts.map((a) => [a.target.url, a.end])).toEqual([
      [slow.url, 'cancelled'],
      [fast.url, 'complete'],
    ]);
    expect(outcome.attempt?.target.url).toBe(fast.url);
    expect(hedges[0]!.req).toBe(outcome.req);
  });

  it('HEAD is hedged too', async () => {
    const slow = await up('slow', hold);
    const fast = await up('fast');
    const { h, hedges } = await hedgedRouter([slow.url, fast.url], { afterMs: 50 });
    const res = await send(`${h.url}/h/item`, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBe('fast');
    expect(hedges).toHaveLength(1);
    await waitFor(() => slow.hits[0]?.closed === true);
    expect(slow.hits[0]!.aborted).toBe(true);
  });

  it('the first answers before the hedge does: the hedge is the one cancelled', async () => {
    const first = await up('first', replyAfter(150));
    const second = await up('second', hold);
    const { h, picker, log, hedges } = await hedgedRouter([first.url, second.url], {
      afterMs: 50,
    });
    const res = await send(`${h.url}/h/item`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('first');
    expect(hedges).toHaveLength(1);
    await waitFor(() => second.hits[0]?.closed === true);
    expect(second.hits[0]!.aborted).toBe(true);
    await settled(picker, 2);
    expect(picker.ended).toContainEqual({ url: second.url, end: 'cancelled', status: 0 });
    await waitFor(() => log.list.length > 0);
    expect(log.list[0]!.attempts.map((a) => [a.target.url, a.end])).toEqual([
      [first.url, 'complete'],
      [second.url, 'cancelled'],
    ]);
  });

  it('`maxHedges: 2`: a second hedge after another afterMs; the losers are all cancelled', async () => {
    const slow1 = await up('slow1', hold);
    const slow2 = await up('slow2', hold);
    const fast = await up('fast');
    const { h, picker, log, hedges } = await hedgedRouter([slow1.url, slow2.url, fast.url], {
      afterMs: 50,
      maxHedges: 2,
    });
    const res = await send(`${h.url}/h/item`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('fast');
    expect(hedges.map((e) => [e.target.url, e.hedge])).toEqual([
      [slow2.url, 1],
      [fast.url, 2],
    ]);
    await waitFor(() => slow1.hits[0]?.closed === true && slow2.hits[0]?.closed === true);
    expect(slow1.hits[0]!.aborted).toBe(true);
    expect(slow2.hits[0]!.aborted).toBe(true);
    await settled(picker, 3);
    await waitFor(() => log.list.length > 0);
    expect(log.list[0]!.attempts.map((a) => a.end)).toEqual(['cancelled', 'cancelled', 'complete']);
  });

  it('one hedge by default (maxHedges 1): two slow targets, the third never called', async () => {
    const slow1 = await up('slow1', hold);
    const slow2 = await up('slow2', hold);
    const fast = await up('fast');
    const { h, picker, hedges } = await hedgedRouter(
      [slow1.url, slow2.url, fast.url],
      { afterMs: 50 },
      { timeoutMs: 400 },
    );
    const res = await send(`${h.url}/h/item`);
    expect(res.status).toBe(504);
    expect(hedges).toHaveLength(1);
    expect(fast.hits).toHaveLength(0);
    await settled(picker, 2);
    expect(picker.started).toEqual([slow1.url, slow2.url]);
  });
});

describe('what is not hedged', () => {
  it.each(['POST', 'DELETE'])(
    '%s on a hedged route: the slow target answers it',
    async (method) => {
      const slow = await up('slow', replyAfter(200));
      const fast = await up('fast');
      const { h, picker, hedges } = await hedgedRouter([slow.url, fast.url], { afterMs: 50 });
      const body = 'x=1';
      const res = await send(`${h.url}/h/item`, {
        method,
        headers: { 'content-type': 'text/plain', 'content-length': body.length },
        body,
      });
      expect(res.status).toBe(200);
      expect(answeredBy(res)).toBe('slow');
      expect(hedges).toHaveLength(0);
      expect(fast.hits).toHaveLength(0);
      await settled(picker, 1);
      expect(picker.started).toEqual([slow.url]);
    },
  );

  it('a fast first target (well within afterMs): no hedge', async () => {
    const a = await up('a');
    const b = await up('b');
    const { h, picker, hedges } = await hedgedRouter([a.url, b.url], { afterMs: 1000 });
    for (let i = 0; i < 5; i++) {
      const res = await send(`${h.url}/h/item`);
      expect(res.status).toBe(200);
      expect(answeredBy(res)).toBe('a');
    }
    await settled(picker, 5);
    expect(hedges).toHaveLength(0);
    expect(b.hits).toHaveLength(0);
    expect(picker.ended.map((e) => e.end)).toEqual(Array(5).fill('complete'));
  });

  it('a GET on a route without `hedge`: not hedged', async () => {
    const slow = await up('slow', replyAfter(200));
    const fast = await up('fast');
    const { h, hedges } = await hedgedRouter([slow.url, fast.url], { afterMs: 50 });
    const res = await send(`${h.url}/plain`);
    expect(res.status).toBe(200);
    expect(answeredBy(res)).toBe('slow');
    expect(hedges).toHaveLength(0);
    expect(fast.hits).toHaveLength(0);
  });
});

describe('hedges count against the retry budget', () => {
  it('once the budget is spent, requests wait for the slow target', async () => {
    // The smallest budget: none at all if the validation takes it, else one per second.
    let budget: NonNullable<RetryOptions['budget']> = { ratio: 0, minPerSecond: 0 };
    try {
      const probe = createRouter({
        services: { svc: { target: 'http://127.0.0.1:1', retries: { budget } } },
        routes: [{ path: '/**', service: 'svc' }],
      });
      closers.push(() => probe.close());
    } catch (err) {
      if (!isConfigError(err)) throw err;
      budget = { ratio: 0, minPerSecond: 1, windowMs: 1000 };
    }
    const slow = await up('slow', replyAfter(150));
    const fast = await up('fast');
    const { h, hedges } = await hedgedRouter(
      [slow.url, fast.url],
      { afterMs: 50 },
      { retries: { budget } },
    );
    const requests = 6;
    const began = Date.now();
    const by: (string | undefined)[] = [];
    for (let i = 0; i < requests; i++) {
      const res = await send(`${h.url}/h/item`);
      expect(res.status).toBe(200);
      by.push(answeredBy(res));
    }
    const elapsed = Date.now() - began;
    if (budget.minPerSecond === 0) {
      expect(hedges).toHaveLength(0);
      expect(by).toEqual(Array(requests).fill('slow'));
    } else {
      // One hedge per window of 1 s; the run may touch ceil(elapsed / 1 s) + 1 windows.
      expect(hedges.length).toBeGreaterThanOrEqual(1);
      expect(hedges.length).toBeLessThanOrEqual(Math.ceil(elapsed / 1000) + 1);
      expect(hedges.length).toBeLessThan(requests);
      expect(by.filter((n) => n === 'slow').length).toBe(requests - hedges.length);
    }
    expect(fast.hits).toHaveLength(hedges.length);
  });
});

describe('config errors name the path', () => {
  const build = (hedge: unknown) => () =>
    createRouter({
      services: { svc: { target: 'http://127.0.0.1:1' } },
      routes: [{ path: '/**', service: 'svc', hedge: hedge as HedgeOptions }],
    });

  it.each<[string, unknown, string]>([
    ['afterMs 0', { afterMs: 0 }, 'routes[0].hedge.afterMs'],
    ['afterMs -5', { afterMs: -5 }, 'routes[0].hedge.afterMs'],
    ['afterMs missing', { maxHedges: 1 }, 'routes[0].hedge.afterMs'],
    ['maxHedges 0', { afterMs: 50, maxHedges: 0 }, 'routes[0].hedge.maxHedges'],
    ['maxHedges 1.5', { afterMs: 50, maxHedges: 1.5 }, 'routes[0].hedge.maxHedges'],
    ['an unknown key', { afterMs: 50, after: 10 }, 'routes[0].hedge.after'],
    ['hedge true', true, 'routes[0].hedge'],
  ])('%s', (_label, hedge, path) => {
    expect(configErrorOf(build(hedge)).path).toBe(path);
  });

  it('valid settings are accepted', () => {
    for (const hedge of [{ afterMs: 1 }, { afterMs: 100, maxHedges: 2 }, false]) {
      const router = build(hedge)();
      closers.push(() => router.close());
    }
  });
});
