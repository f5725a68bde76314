import http, { IncomingMessage, type IncomingHttpHeaders } from 'node:http';
import net, { Socket } from 'node:net';
import {
  createBalancer,
  type Balancer,
  type BalancerOptions,
  type HealthChangeEvent,
} from '@turnpike/balancer';
import { listen, waitFor, type Running } from '../../../test/helpers/servers';

const req = new IncomingMessage(new Socket());

/** An upstream whose /health answers `status` (changeable), counting checks by status. */
interface Upstream extends Running {
  status: number;
  checks: number;
  byStatus: Map<number, number>;
  seen: { method: string; url: string; headers: IncomingHttpHeaders }[];
}

const running: Running[] = [];
const open: Balancer[] = [];

async function upstream(status = 200): Promise<Upstream> {
  const state = {
    status,
    checks: 0,
    byStatus: new Map<number, number>(),
    seen: [] as Upstream['seen'],
  };
  const server = await listen((request, res) => {
    if (request.url === '/health' || request.method === 'HEAD') {
      state.checks++;
      state.seen.push({ method: request.method!, url: request.url!, headers: request.headers });
      const s = state.status;
      state.byStatus.set(s, (state.byStatus.get(s) ?? 0) + 1);
      res.statusCode = s;
      res.end('health body');
      return;
    }
    res.end('app');
  });
  running.push(server);
  return Object.assign<typeof state, Running>(state, server);
}

function balancerOf(options: BalancerOptions): Balancer {
  const b = createBalancer(options);
  open.push(b);
  return b;
}

afterEach(async () => {
  for (const b of open.splice(0)) b.close();
  await Promise.all(running.splice(0).map((r) => r.close()));
});

function nextChange(b: Balancer): Promise<HealthChangeEvent> {
  return new Promise((resolve) => {
    const dispose = b.onHealthChange((e) => {
      dispose();
      resolve(e);
    });
  });
}

describe('active health checks', () => {
  it('marks a target unhealthy after exactly unhealthyThreshold failed checks, and back after healthyThreshold', async () => {
    const a = await upstream(200);
    const other = await upstream(200);
    const b = balancerOf({
      name: 'users',
      targets: [a.url, other.url],
      // Room for a loaded machine: a check that times out would be a failure too.
      healthCheck: { path: '/health', intervalMs: 100, unhealthyThreshold: 3, healthyThreshold: 2 },
    });
    await waitFor(() => a.checks >= 2);
    expect(b.status()[0]!.lastCheck).toMatchObject({ ok: true, detail: 'status 200' });
    a.status = 500;
    const down = await nextChange(b);
    expect(down).toEqual({
      service: 'users',
      target: b.targets[0],
      healthy: false,
      reason: 'status 500',
    });
    expect(a.byStatus.get(500)).toBe(3);
    expect(b.status()[0]).toMatchObject({
      state: 'unhealthy',
      consecutiveFailures: 3,
      lastCheck: { ok: false, detail: 'status 500' },
    });
    expect(new Date(b.status()[0]!.lastCheck!.at).getTime()).toBeLessThanOrEqual(Date.now());
    expect([1, 2, 3, 4].map(() => b.pick(req)?.url)).toEqual([
      other.url,
      other.url,
      other.url,
      other.url,
    ]);
    expect(b.hasHealthy()).toBe(true);

    a.status = 204;
    const up = await nextChange(b);
    expect(up).toMatchObject({ healthy: true, reason: 'passed' });
    expect(a.byStatus.get(204)).toBe(2);
    expect(b.status()[0]!.state).toBe('healthy');
    expect(new Set([1, 2, 3, 4].map(() => b.pick(req)?.url))).toEqual(new Set([a.url, other.url]));
  });

  it('starts targets healthy, checks at once, and sends the target’s Host', async () => {
    const a = await upstream(200);
    const b = balancerOf({
      targets: [a.url],
      healthCheck: { path: '/health', intervalMs: 60000 },
    });
    expect(b.status()[0]!.state).toBe('healthy');
    expect(b.status()[0]!.lastCheck).toBeNull();
    await waitFor(() => b.status()[0]!.lastCheck !== null);
    expect(a.checks).toBe(1);
    expect(a.seen[0]).toMatchObject({ method: 'GET', url: '/health' });
    expect(a.seen[0]!.headers.host).toBe(`127.0.0.1:${a.port}`);
    // A fresh connection each check: no keep-alive.
    expect(a.seen[0]!.headers.connection).toBe('close');
  });

  it('sends the configured method and headers, a given Host instead of the target’s', async () => {
    const a = await upstream(200);
    const b = balancerOf({
      targets: [a.url],
      healthCheck: {
        path: '/ready',
        method: 'HEAD',
        intervalMs: 60000,
        headers: { Host: 'users.internal', 'x-probe': 'turnpike' },
      },
    });
    await waitFor(() => b.status()[0]!.lastCheck !== null);
    expect(a.seen[0]).toMatchObject({ method: 'HEAD', url: '/ready' });
    expect(a.seen[0]!.headers).toMatchObject({ host: 'users.internal', 'x-probe': 'turnpike' });
    expect(b.status()[0]!.lastCheck).toMatchObject({ ok: true, detail: 'status 200' });
  });

  it('judges statuses by expectStatus, a list or a range', async () => {
    const a = await upstream(404);
    const c = await upstream(302);
    const b = balancerOf({
      targets: [a.url, c.url],
      healthCheck: {
        path: '/health',
        intervalMs: 100,
        unhealthyThreshold: 1,
        expectStatus: [200, 404],
      },
    });
    const down = await nextChange(b);
    expect(down).toMatchObject({ target: b.targets[1], healthy: false, reason: 'status 302' });
    expect(b.status()[0]!.lastCheck).toMatchObject({ ok: true, detail: 'status 404' });
    const d = balancerOf({
      targets: [c.url],
      healthCheck: {
        path: '/health',
        intervalMs: 100,
        unhealthyThreshold: 3,
        expectStatus: { min: 300, max: 302 },
      },
    });
    await waitFor(() => d.status()[0]!.lastCheck !== null);
    expect(d.status()[0]).toMatchObject({ state: 'healthy', lastCheck: { ok: true } });
  });

  it('fails a check that gets no answer within timeoutMs', async () => {
    const held: http.ServerResponse[] = [];
    const hanging = await listen((_req, res) => {
      held.push(res);
    });
    running.push(hanging);
    const b = balancerOf({
      targets: [hanging.url],
      healthCheck: { path: '/health', intervalMs: 50, timeoutMs: 30, unhealthyThreshold: 2 },
    });
    const started = Date.now();
    const down = await nextChange(b);
    expect(down).toMatchObject({ healthy: false, reason: 'timeout' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(50);
    expect(b.status()[0]).toMatchObject({
      state: 'unhealthy',
      lastCheck: { ok: false, detail: 'timeout' },
    });
    expect(b.pick(req)).toBeUndefined();
    expect(held.length).toBeGreaterThanOrEqual(2);
  });

  it('fails a check whose body never ends within timeoutMs', async () => {
    const trickle = await listen((_req, res) => {
      res.writeHead(200);
      res.write('partial');
    });
    running.push(trickle);
    const b = balancerOf({
      targets: [trickle.url],
      healthCheck: { path: '/health', intervalMs: 40, timeoutMs: 30, unhealthyThreshold: 1 },
    });
    expect(await nextChange(b)).toMatchObject({ healthy: false, reason: 'timeout' });
  });

  it('fails a check answered with garbage, without crashing', async () => {
    let connections = 0;
    const junk = net.createServer((socket) => {
      connections++;
      socket.on('error', () => {});
      socket.end('this is not HTTP at all\r\n\r\n');
    });
    const j = await listen(junk);
    running.push(j);
    const b = balancerOf({
      targets: [j.url],
      healthCheck: { path: '/health', intervalMs: 20, unhealthyThreshold: 2 },
    });
    const down = await nextChange(b);
    expect(down.healthy).toBe(false);
    expect(down.reason).toMatch(/^HPE_/);
    // Checks go on after the failure.
    const seen = connections;
    await waitFor(() => connections >= seen + 2);
    expect(b.status()[0]!.lastCheck).toMatchObject({ ok: false });
  });

  it('fails a check whose connection is refused or reset', async () => {
    // A port with nothing listening: take one and close it.
    const gone = await listen(() => {});
    await gone.close();
    const reset = net.createServer((socket) => socket.resetAndDestroy());
    const r = await listen(reset);
    running.push(r);
    const b = balancerOf({
      targets: [gone.url, r.url],
      healthCheck: { path: '/health', intervalMs: 20, unhealthyThreshold: 1 },
    });
    const reasons = new Map<string, string>();
    b.onHealthChange((e) => reasons.set(e.target.url, e.reason));
    await waitFor(() => reasons.size === 2);
    expect(reasons.get(gone.url)).toBe('ECONNREFUSED');
    expect(reasons.get(r.url)).toBe('ECONNRESET');
    expect(b.hasHealthy()).toBe(false);
    expect(b.pick(req)).toBeUndefined();
  });

  it('keeps one check in flight per target, even when a check outlasts the interval', async () => {
    let inFlight = 0;
    let most = 0;
    let checks = 0;
    const slow = await listen((_req, res) => {
      checks++;
      inFlight++;
      most = Math.max(most, inFlight);
      // In flight until the balancer has it answered or gave up on it (a busy machine can
      // fire the 90 ms timer past the 100 ms timeout: the check then ended at the timeout).
      res.once('close', () => inFlight--);
      const t = setTimeout(() => res.end('ok'), 90);
      res.once('close', () => clearTimeout(t));
    });
    running.push(slow);
    const b = balancerOf({
      targets: [slow.url],
      healthCheck: { path: '/health', intervalMs: 100, timeoutMs: 100 },
    });
    await waitFor(() => checks >= 5);
    expect(most).toBe(1);
    expect(b.status()[0]!.lastCheck).not.toBeNull();
  });

  it('stops checking on close(), while another balancer’s checks go on', async () => {
    const a = await upstream(200);
    const c = await upstream(200);
    const first = balancerOf({
      targets: [a.url],
      healthCheck: { path: '/health', intervalMs: 20 },
    });
    balancerOf({ targets: [c.url], healthCheck: { path: '/health', intervalMs: 20 } });
    await waitFor(() => a.checks >= 2);
    first.close();
    first.close();
    // Let a check that was already on the wire arrive.
    const mark = c.checks;
    await waitFor(() => c.checks >= mark + 1);
    const after = a.checks;
    await waitFor(() => c.checks >= mark + 6);
    expect(a.checks).toBe(after);
  });

  it('checks targets added by setTargets and stops checking removed ones', async () => {
    const a = await upstream(200);
    const c = await upstream(500);
    const b = balancerOf({
      targets: [a.url],
      healthCheck: { path: '/health', intervalMs: 20, unhealthyThreshold: 2 },
    });
    await waitFor(() => a.checks >= 1);
    const down = nextChange(b);
    b.setTargets([c.url]);
    expect(await down).toMatchObject({ healthy: false, reason: 'status 500' });
    const mark = c.checks;
    await waitFor(() => c.checks >= mark + 1);
    const after = a.checks;
    await waitFor(() => c.checks >= mark + 5);
    expect(a.checks).toBe(after);
  });

  it('keeps the health of a target that stays across setTargets', async () => {
    const a = await upstream(500);
    const b = balancerOf({
      targets: [a.url],
      healthCheck: { path: '/health', intervalMs: 20, unhealthyThreshold: 1 },
    });
    await nextChange(b);
    b.setTargets([{ url: a.url, weight: 3 }]);
    expect(b.status()[0]).toMatchObject({ state: 'unhealthy', weight: 3 });
    const mark = a.checks;
    await waitFor(() => a.checks >= mark + 3);
    expect(b.status()[0]!.state).toBe('unhealthy');
  });

  it('says in retryAfter when the next check of an unhealthy target is due', async () => {
    const a = await upstream(500);
    const b = balancerOf({
      targets: [a.url],
      healthCheck: { path: '/health', intervalMs: 3000, unhealthyThreshold: 1 },
    });
    await nextChange(b);
    const seconds = b.retryAfter();
    expect(seconds).toBeGreaterThanOrEqual(1);
    expect(seconds).toBeLessThanOrEqual(3);
  });

  it('uses every non-draining target when none is healthy in panic mode', async () => {
    const a = await upstream(500);
    const c = await upstream(500);
    const options = {
      targets: [a.url, c.url, { url: 'http://127.0.0.1:1', weight: 0 }],
      healthCheck: { path: '/health', intervalMs: 20, unhealthyThreshold: 1 },
    };
    const calm = balancerOf(options);
    const panicking = balancerOf({ ...options, panic: true });
    await waitFor(
      () =>
        calm.status().filter((s) => s.state === 'unhealthy').length === 2 &&
        panicking.status().filter((s) => s.state === 'unhealthy').length === 2,
    );
    expect(calm.pick(req)).toBeUndefined();
    expect(panicking.hasHealthy()).toBe(false);
    expect([1, 2, 3, 4].map(() => panicking.pick(req)?.url)).toEqual([a.url, c.url, a.url, c.url]);
  });

  it('keeps a listener’s throw from stopping the checks', async () => {
    const a = await upstream(500);
    const b = balancerOf({
      targets: [a.url],
      healthCheck: { path: '/health', intervalMs: 20, unhealthyThreshold: 1, healthyThreshold: 1 },
    });
    b.onHealthChange(() => {
      throw new Error('listener bug');
    });
    await waitFor(() => b.status()[0]!.state === 'unhealthy');
    a.status = 200;
    await waitFor(() => b.status()[0]!.state === 'healthy');
  });
});
