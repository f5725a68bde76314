import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayConfig } from '@turnpike/gateway';
import {
  listen,
  startGateway,
  waitFor,
  type GatewayHarness,
  type Running,
} from './helpers/servers';

/** An upstream that names itself in every answer, and counts what it was sent. */
interface Named extends Running {
  name: string;
  /** Requests received (every path). */
  hits: number;
  /** Requests to /slow still held open. */
  parked: ServerResponse[];
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/**
 * Starts an upstream called `name`. `/slow` is held open when `park` is set (released by the
 * test, or at close); every answer is delayed by `delayMs` inside the upstream when given.
 */
async function named(name: string, options: { park?: boolean; delayMs?: number } = {}) {
  const u = {} as Named;
  const running = await listen((req: IncomingMessage, res: ServerResponse) => {
    u.hits++;
    req.resume();
    const answer = () => {
      res.setHeader('x-upstream', name);
      res.setHeader('content-type', 'text/plain');
      res.end(name);
    };
    if (options.park && req.url === '/slow') {
      u.parked.push(res);
      return;
    }
    if (options.delayMs !== undefined) setTimeout(answer, options.delayMs);
    else answer();
  });
  Object.assign(u, running, { name, hits: 0, parked: [] });
  closers.push(async () => {
    for (const res of u.parked.splice(0)) res.end();
    await running.close();
  });
  return u;
}

async function three(options: Parameters<typeof named>[1] = {}) {
  return [await named('a', options), await named('b'), await named('c')] as const;
}

/** A gateway mounted at /api in an Express app, with one service `svc` under `/**`. */
async function gatewayFor(
  service: GatewayConfig['services'][string],
  extra: Partial<GatewayConfig> = {},
): Promise<GatewayHarness> {
  const h = await startGateway({
    services: { svc: service },
    routes: [{ path: '/**', service: 'svc' }],
    ...extra,
  });
  closers.push(() => h.close());
  return h;
}

/** GET `url`; resolves with the status, the answering upstream and the headers. */
async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  const body = await res.text();
  return {
    status: res.status,
    upstream: res.headers.get('x-upstream'),
    headers: res.headers,
    body,
  };
}

/** Sends `n` GETs one after the other and counts the upstreams that answered. */
async function tally(url: string, n: number, headers?: (i: number) => Record<string, string>) {
  const counts: Record<string, number> = {};
  const order: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await get(url, headers?.(i));
    expect(r.status).toBe(200);
    counts[r.upstream!] = (counts[r.upstream!] ?? 0) + 1;
    order.push(r.upstream!);
  }
  return { counts, order };
}

describe('balancing through the gateway', () => {
  it('round-robin spreads 300 GETs exactly evenly over 3 targets', async () => {
    const [a, b, c] = await three();
    const h = await gatewayFor({ targets: [a.url, b.url, c.url], balancer: 'round-robin' });
    const { counts } = await tally(`${h.url}/x`, 300);
    expect(counts).toEqual({ a: 100, b: 100, c: 100 });
  });

  it('weighted-round-robin with weights 3:1:1 gives 60/20/20 in a smooth sequence', async () => {
    const [a, b, c] = await three();
    const h = await gatewayFor({
      targets: [
        { url: a.url, weight: 3 },
        { url: b.url, weight: 1 },
        { url: c.url, weight: 1 },
      ],
      balancer: 'weighted-round-robin',
    });
    const n = 300;
    const { counts, order } = await tally(`${h.url}/x`, n);
    expect(Math.abs(counts.a! / n - 0.6)).toBeLessThanOrEqual(0.03);
    expect(Math.abs(counts.b! / n - 0.2)).toBeLessThanOrEqual(0.03);
    expect(Math.abs(counts.c! / n - 0.2)).toBeLessThanOrEqual(0.03);
    // Smooth: never a burst of the heavy target; every window of 5 holds it 3 times.
    for (let i = 0; i + 5 <= order.length; i++) {
      expect(order.slice(i, i + 5).filter((u) => u === 'a')).toHaveLength(3);
    }
    expect(order.join('')).not.toContain('aaa');
  });

  it('least-connections avoids a target that holds requests open', async () => {
    const [a, b, c] = await three({ park: true });
    const h = await gatewayFor({
      targets: [a.url, b.url, c.url],
      balancer: 'least-connections',
    });
    // Slow requests until some park on a (b and c answer /slow at once).
    const slow: Promise<unknown>[] = [];
    for (let i = 0; i < 20 && a.parked.length === 0; i++) {
      let answered = false;
      const request = get(`${h.url}/slow`).then(() => (answered = true));
      slow.push(request);
      await waitFor(() => answered || a.parked.length > 0);
    }
    expect(a.parked.length).toBeGreaterThan(0);
    const aBefore = a.hits;
    const { counts } = await tally(`${h.url}/fast`, 100);
    expect(a.hits - aBefore).toBeLessThanOrEqual(1);
    expect((counts.b ?? 0) + (counts.c ?? 0)).toBeGreaterThanOrEqual(99);
    for (const res of a.parked.splice(0)) res.end();
    await Promise.all(slow);
  });

  it('p2c prefers fast targets over one that answers 30 ms late', async () => {
    const slow = await named('slow', { delayMs: 30 });
    const fast1 = await named('fast1');
    const fast2 = await named('fast2');
    const h = await gatewayFor({
      targets: [slow.url, fast1.url, fast2.url],
      balancer: 'p2c',
    });
    const { counts } = await tally(`${h.url}/x`, 150);
    // Round-robin or random would give it a third (50): p2c picks it only while a fast
    // target looks slower, which a loaded machine's latency spikes cause now and then.
    expect(counts.slow ?? 0).toBeLessThanOrEqual(30);
    expect(counts.slow ?? 0).toBeLessThan(Math.min(counts.fast1 ?? 0, counts.fast2 ?? 0));
  });

  it('ip-hash sticks one client address to one target and spreads different ones', async () => {
    const [a, b, c] = await three();
    const h = await gatewayFor(
      { targets: [a.url, b.url, c.url], balancer: 'ip-hash' },
      { trustProxy: ['127.0.0.1'] },
    );
    for (const ip of ['203.0.113.7', '198.51.100.20', '192.0.2.99']) {
      const { counts } = await tally(`${h.url}/x`, 15, () => ({ 'x-forwarded-for': ip }));
      expect(Object.keys(counts)).toHaveLength(1);
    }
    const { counts } = await tally(`${h.url}/x`, 150, (i) => ({
      'x-forwarded-for': `10.${i % 7}.${Math.floor(i / 7)}.${(i * 37) % 251}`,
    }));
    expect(Object.keys(counts).sort()).toEqual(['a', 'b', 'c']);
    for (const n of Object.values(counts)) expect(n).toBeGreaterThanOrEqual(15);
  });

  it('hash on a header sticks per value, and removing a target remaps only its keys', async () => {
    const [a, b, c] = await three();
    const h = await gatewayFor(
      { targets: [a.url, b.url, c.url], balancer: { hash: { header: 'x-user-id' } } },
      // x-user-id is an identity header by default (removed from client requests): here the
      // client sends it, as a stage that authenticates would set it.
      { identityHeaders: ['x-consumer-id'] },
    );
    const url = `${h.url}/x`;
    for (const user of ['alice', 'bob', 'carol']) {
      const { counts } = await tally(url, 10, () => ({ 'x-user-id': user }));
      expect(Object.keys(counts)).toHaveLength(1);
    }
    const keys = Array.from({ length: 1000 }, (_, i) => `user-${i}`);
    /** Where each key goes now, 50 requests at a time. */
    const route = async () => {
      const out: string[] = [];
      for (let i = 0; i < keys.length; i += 50) {
        const batch = keys.slice(i, i + 50).map((key) => get(url, { 'x-user-id': key }));
        for (const r of await Promise.all(batch)) out.push(r.upstream!);
      }
      return out;
    };
    const before = await route();
    const onC = before.filter((u) => u === 'c').length;
    expect(onC).toBeGreaterThan(200);
    expect(onC).toBeLessThan(470);

    h.gateway.balancer('svc')!.setTargets([a.url, b.url]);
    const after = await route();
    expect(after).not.toContain('c');
    const moved = after.filter((now, i) => before[i] !== 'c' && now !== before[i]).length;
    // Consistent hashing: the keys of a and b stay where they were; only c's (about 1/3) move.
    expect(moved).toBe(0);
  });

  it('a target of weight 0 is drained: it gets nothing', async () => {
    const [a, b, c] = await three();
    const h = await gatewayFor({
      targets: [a.url, { url: b.url, weight: 0 }, c.url],
      balancer: 'round-robin',
    });
    const { counts } = await tally(`${h.url}/x`, 60);
    expect(counts).toEqual({ a: 30, c: 30 });
    expect(b.hits).toBe(0);

    // Drained at run time too: setTargets with weight 0 keeps the target, sends it nothing.
    h.gateway.balancer('svc')!.setTargets([{ url: a.url, weight: 0 }, b.url, c.url]);
    const later = await tally(`${h.url}/x`, 40);
    expect(later.counts.a).toBeUndefined();
    expect(later.counts.b).toBe(20);
    expect(later.counts.c).toBe(20);
  });

  it('a target list emptied at run time answers a 503 problem, not a throw', async () => {
    const [a, b, c] = await three();
    const h = await gatewayFor({ targets: [a.url, b.url, c.url] });
    expect((await get(`${h.url}/x`)).status).toBe(200);
    const hits = a.hits + b.hits + c.hits;

    h.gateway.balancer('svc')!.setTargets([]);
    const r = await get(`${h.url}/x`);
    expect(r.status).toBe(503);
    expect(r.headers.get('content-type')).toBe('application/problem+json');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(r.body)).toMatchObject({ status: 503 });
    expect(a.hits + b.hits + c.hits).toBe(hits);

    // And back: targets given again serve again.
    h.gateway.balancer('svc')!.setTargets([b.url]);
    expect((await get(`${h.url}/x`)).upstream).toBe('b');
  });

  it('gateway.balancer() is undefined for an unknown service', async () => {
    const [a] = await three();
    const h = await gatewayFor({ targets: [a.url] });
    expect(h.gateway.balancer('svc')!.targets.map((t) => t.url)).toEqual([
      expect.stringContaining(`127.0.0.1:${a.port}`),
    ]);
    expect(h.gateway.balancer('nope')).toBeUndefined();
    expect(h.gateway.balancer('__proto__')).toBeUndefined();
  });
});
