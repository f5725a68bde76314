import { randomUUID } from 'node:crypto';
import net from 'node:net';
import vm from 'node:vm';
import type { CircuitBreaker, StateChangeEvent } from '@turnpike/breaker';
import type { GatewayConfig, ServiceConfig } from '@turnpike/gateway';
import { attemptsAfterEach, reply, send, type Answer, type Hit } from './helpers/attempts';
import { fetchResponse, recordingLogger } from './helpers/outcomes';
import {
  killRedisServers,
  redisCommand,
  startRedisServer,
  type RedisServer,
} from './helpers/redis-server';
import { listen, waitFor, type GatewayHarness } from './helpers/servers';

/** The Redis every jest worker shares: each test keeps to keys of its own (a random service name). */
const SHARED_REDIS_PORT = 6379;
const SHARED_REDIS = `redis://127.0.0.1:${SHARED_REDIS_PORT}`;
/** The channel sharing publishes on (the default prefix `turnpike:`). */
const CHANNEL = 'turnpike:breaker';

const { closers, up, gateway: gatewayOf } = attemptsAfterEach();
afterAll(killRedisServers);

async function privateRedis(): Promise<RedisServer> {
  const redis = await startRedisServer();
  closers.push(() => redis.kill());
  return redis;
}

/** The Redis key of a service's circuit. */
const keyOf = (service: string): string => `${CHANNEL}:state:${service}`;
const lockOf = (service: string): string => `${CHANNEL}:lock:${service}`;

/**
 * The canary of service `name`: a service of its own (no route) whose circuit the tests open
 * and close by hand to see that sharing works, without touching the circuit under test.
 */
const canaryOf = (name: string): string => `${name}.canary`;

/**
 * A service name no other test, worker or earlier run uses (so its Redis keys are its own);
 * its keys on the shared Redis are deleted after the test.
 */
function serviceName(): string {
  const name = `svc${randomUUID().slice(0, 8)}`;
  const keys = [name, canaryOf(name)].flatMap((s) => [keyOf(s), lockOf(s)]);
  closers.push(() =>
    redisCommand(SHARED_REDIS_PORT, ['DEL', ...keys]).then(
      () => undefined,
      () => undefined,
    ),
  );
  return name;
}

/** The settings every service here has: one try per request, no passive ejection (only the circuit reacts). */
const PLAIN = { outlier: false, retries: false } as const;

const BREAKER = { failureThreshold: 3, resetTimeoutMs: 20_000 } as const;

/** One service `name` on `targets` with `breaker` (and its canary), one catch-all route, sharing through `redis`. */
function config(
  name: string,
  targets: string[],
  breaker: ServiceConfig['breaker'],
  more: Partial<GatewayConfig> = {},
): GatewayConfig {
  return {
    services: {
      [name]: { targets, ...PLAIN, breaker },
      [canaryOf(name)]: { targets, ...PLAIN, breaker: BREAKER },
    },
    routes: [{ path: '/**', service: name }],
    redis: SHARED_REDIS,
    ...more,
  };
}

/** An upstream answer the test switches as it goes: a status, or holding requests until released. */
function controlled(initial: number): {
  answer: Answer;
  set(mode: number | 'hold'): void;
  /** Requests held so far and not released. */
  readonly held: Hit[];
  /** Resolves when the first request is held. */
  readonly firstHeld: Promise<void>;
  /** Answers the held requests `status`, and every later one. */
  release(status: number): void;
} {
  let mode: number | 'hold' = initial;
  const held: Hit[] = [];
  let onHeld!: () => void;
  const firstHeld = new Promise<void>((resolve) => (onHeld = resolve));
  return {
    held,
    firstHeld,
    answer: (hit) => {
      if (mode !== 'hold') return reply(mode)(hit);
      held.push(hit);
      onHeld();
    },
    set: (m) => (mode = m),
    release(status) {
      mode = status;
      for (const hit of held.splice(0)) reply(status)(hit);
    },
  };
}

/** What a client got, or status 0 with `error` when it got no response in time. */
interface Got {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  error?: Error;
}

/** One request with a client deadline (`ms`): a request that hangs ends as status 0. */
function sendWithin(url: string, ms = 3000): Promise<Got> {
  return fetchResponse(url, { signal: AbortSignal.timeout(ms) }).then(
    ({ status, headers, body }) => ({ status, headers, body }),
    (error: Error) => ({ status: 0, headers: {}, body: Buffer.alloc(0), error }),
  );
}

/** Sends `n` requests one after another; their statuses. */
async function drive(url: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await send(url)).status);
  return out;
}

function problemType(body: Buffer): string | undefined {
  try {
    return (JSON.parse(body.toString('utf8')) as { type?: string }).type;
  } catch {
    return undefined;
  }
}

/** Whether a response is the gateway's open answer: 503 problem+json `circuit-open` with an integer Retry-After >= 1. */
function isCircuitOpen(res: Got): boolean {
  const retryAfter = Number(res.headers['retry-after']);
  return (
    res.status === 503 &&
    res.headers['content-type'] === 'application/problem+json' &&
    problemType(res.body) === 'urn:turnpike:problem:circuit-open' &&
    Number.isInteger(retryAfter) &&
    retryAfter >= 1
  );
}

function expectCircuitOpen(res: Got): number {
  expect({
    status: res.status,
    type: res.headers['content-type'],
    problem: problemType(res.body),
  }).toEqual({
    status: 503,
    type: 'application/problem+json',
    problem: 'urn:turnpike:problem:circuit-open',
  });
  expect(isCircuitOpen(res)).toBe(true);
  return Number(res.headers['retry-after']);
}

/** The half-open time of an open circuit (undefined when it is not open). */
function untilOf(breaker: CircuitBreaker): number | undefined {
  const s = breaker.state;
  return s.kind === 'open' ? s.until : undefined;
}

/** Whether the circuit's Redis connection is ready (sharing active, not deciding alone). */
const connected = (breaker: CircuitBreaker): boolean => breaker.sync?.active === true;

/** Waits until the clock has moved past now: transitions stamped in the same millisecond are not newer. */
async function nextMillisecond(): Promise<void> {
  const now = Date.now();
  await waitFor(() => Date.now() > now, 1000);
}

/** {@link waitFor}, failing with `what` when the deadline passes. */
async function waitUntil(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  try {
    await waitFor(check, timeoutMs);
  } catch (err) {
    throw new Error(`${what}: not within ${timeoutMs} ms`, { cause: err });
  }
}

/** Polls an async check until it holds or the deadline passes. */
async function eventually(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`eventually: ${what}, not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The state changes of service `name`'s circuit in a gateway, from now on. */
function stateChanges(g: GatewayHarness, name: string): StateChangeEvent[] {
  const events: StateChangeEvent[] = [];
  const dispose = g.gateway.onBreakerStateChange((e) => {
    if (e.service === name) events.push(e);
  });
  closers.push(dispose);
  return events;
}

/**
 * Waits until each gateway hears the other's news on the channel (both connected, both
 * subscribed), through the canary of service `name`: opened by hand on one, seen open on the
 * other; closed, seen closed (only the channel carries a close). Leaves the canaries closed.
 */
async function untilSharing(
  name: string,
  ...gateways: [GatewayHarness, GatewayHarness]
): Promise<void> {
  const [x, y] = gateways.map((g) => g.gateway.breaker(canaryOf(name))!) as [
    CircuitBreaker,
    CircuitBreaker,
  ];
  await waitUntil(() => connected(x) && connected(y), 3000, 'both gateways connected to Redis');
  for (const [from, to] of [
    [x, y],
    [y, x],
  ] as const) {
    await nextMillisecond();
    from.open();
    await waitUntil(() => to.state.kind === 'open', 1500, 'a peer hears of an open canary');
    await nextMillisecond();
    from.close();
    await waitUntil(() => to.state.kind === 'closed', 1500, 'a peer hears of a closed canary');
  }
}

/**
 * A TCP proxy to the Redis on `port` whose first connection reaches it `delayMs` late (its
 * bytes wait meanwhile): that client is ready after the ones that connect after it.
 */
/** A TCP proxy to Redis whose link the test can cut (every connection refused) and heal. */
async function partitionable(port: number): Promise<{ url: string; cut(): void; heal(): void }> {
  let cut = false;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.once('close', () => sockets.delete(s));
  };
  const server = net.createServer((client) => {
    track(client);
    if (cut) return void client.destroy();
    const to = net.connect(port, '127.0.0.1');
    track(to);
    to.once('close', () => client.destroy());
    client.once('close', () => to.destroy());
    client.pipe(to);
    to.pipe(client);
  });
  const running = await listen(server);
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await running.close();
  });
  return {
    url: `redis://127.0.0.1:${running.port}`,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    heal() {
      cut = false;
    },
  };
}

async function delayingProxy(
  port: number,
  delayMs: number,
): Promise<{ url: string; readonly connections: number }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    s.once('close', () => sockets.delete(s));
  };
  const timers = new Set<NodeJS.Timeout>();
  const server = net.createServer((client) => {
    track(client);
    client.pause();
    const pipe = (): void => {
      const to = net.connect(port, '127.0.0.1');
      track(to);
      to.once('close', () => client.destroy());
      client.once('close', () => to.destroy());
      client.pipe(to);
      to.pipe(client);
      client.resume();
    };
    if (++connections > 1) return pipe();
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!client.destroyed) pipe();
    }, delayMs);
    timers.add(timer);
  });
  const running = await listen(server);
  closers.push(async () => {
    for (const timer of timers) clearTimeout(timer);
    for (const s of sockets) s.destroy();
    await running.close();
  });
  return {
    url: `redis://127.0.0.1:${running.port}`,
    get connections() {
      return connections;
    },
  };
}

describe('a circuit shared through Redis by gateway instances', () => {
  it('opens on an instance that saw no failure within a second: 503 circuit-open, the same Retry-After, the upstream not called', async () => {
    const name = serviceName();
    const u = await up('u', reply(500));
    const a = await gatewayOf(config(name, [u.url], BREAKER));
    const b = await gatewayOf(config(name, [u.url], BREAKER));
    const ca = a.gateway.breaker(name)!;
    const cb = b.gateway.breaker(name)!;
    await untilSharing(name, a, b);
    const changesB = stateChanges(b, name);

    expect(await drive(`${a.url}/x`, 3)).toEqual([500, 500, 500]);
    expect(ca.state.kind).toBe('open');
    const openedAt = Date.now();
    const retryAfterA = expectCircuitOpen(await send(`${a.url}/x`));
    expect(retryAfterA).toBeGreaterThanOrEqual(19);
    expect(u.hits.length).toBe(3);

    // B is watched, not sent requests, until it knows: a request to a closed B would reach
    // the upstream (and count as B's own failure).
    await waitUntil(() => cb.state.kind === 'open', 1500, "B learns of A's open circuit");
    expect(Date.now() - openedAt).toBeLessThan(1500);
    const resB = await send(`${b.url}/x`);
    const retryAfterB = expectCircuitOpen(resB);
    expect(Math.abs(retryAfterB - retryAfterA)).toBeLessThanOrEqual(1);
    expect(untilOf(cb)).toBe(untilOf(ca)); // the same half-open time
    expect(u.hits.length).toBe(3); // B never called the upstream
    expect(changesB).toEqual([
      expect.objectContaining({ service: name, from: 'closed', to: 'open', reason: 'peer' }),
    ]);
  });

  it('a close travels too: closing A by hand closes B, and B sends traffic again', async () => {
    const name = serviceName();
    const s = controlled(500);
    const u = await up('u', s.answer);
    const a = await gatewayOf(config(name, [u.url], BREAKER));
    const b = await gatewayOf(config(name, [u.url], BREAKER));
    const ca = a.gateway.breaker(name)!;
    const cb = b.gateway.breaker(name)!;
    await untilSharing(name, a, b);

    ca.open();
    await waitUntil(() => cb.state.kind === 'open', 1500, "B learns of A's open circuit");
    expectCircuitOpen(await send(`${b.url}/x`));
    expect(u.hits.length).toBe(0);

    s.set(200);
    await nextMillisecond();
    ca.close();
    // A close deletes the key: only the channel carries it.
    await waitUntil(() => cb.state.kind === 'closed', 1500, "B learns of A's close");
    const res = await send(`${b.url}/x`);
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBe('u');
    expect(u.hits.length).toBe(1);
  });

  it('an instance started after the circuit opened reads the state from its key (with a TTL) and answers 503 without calling the upstream', async () => {
    const name = serviceName();
    const u = await up('u', reply(500));
    const a = await gatewayOf(config(name, [u.url], BREAKER));
    const ca = a.gateway.breaker(name)!;
    await waitFor(() => connected(ca), 3000);

    expect(await drive(`${a.url}/x`, 3)).toEqual([500, 500, 500]);
    const retryAfterA = expectCircuitOpen(await send(`${a.url}/x`));
    // The open state is kept in turnpike:breaker:state:<service> until the half-open time.
    await eventually(
      async () => (await redisCommand(SHARED_REDIS_PORT, ['EXISTS', keyOf(name)])) === 1,
      1500,
      'the open circuit written to its key',
    );
    const ttl = (await redisCommand(SHARED_REDIS_PORT, ['PTTL', keyOf(name)])) as number;
    expect(ttl).toBeGreaterThan(15_000);
    expect(ttl).toBeLessThanOrEqual(20_000);

    const c = await gatewayOf(config(name, [u.url], BREAKER));
    const cc = c.gateway.breaker(name)!;
    await waitUntil(() => cc.state.kind === 'open', 1500, 'C reads the open circuit from Redis');
    expect(untilOf(cc)).toBe(untilOf(ca));
    const retryAfterC = expectCircuitOpen(await send(`${c.url}/x`));
    expect(Math.abs(retryAfterC - retryAfterA)).toBeLessThanOrEqual(1);
    expect(u.hits.length).toBe(3);
  });

  it('one probe for all instances: while it is held the upstream gets nothing else; its 200 closes both', async () => {
    const name = serviceName();
    const s = controlled(500);
    const u = await up('u', s.answer);
    const breaker = { failureThreshold: 3, resetTimeoutMs: 600 };
    const a = await gatewayOf(config(name, [u.url], breaker));
    const b = await gatewayOf(config(name, [u.url], breaker));
    const ca = a.gateway.breaker(name)!;
    const cb = b.gateway.breaker(name)!;
    await untilSharing(name, a, b);

    expect(await drive(`${a.url}/x`, 3)).toEqual([500, 500, 500]);
    await waitUntil(() => cb.state.kind === 'open', 1500, "B learns of A's open circuit");
    const changesA = stateChanges(a, name);
    const changesB = stateChanges(b, name);
    const until = untilOf(ca)!;
    expect(untilOf(cb)).toBe(until);
    s.set('hold'); // the upstream is well again, but slow: the probe waits for the test
    await waitFor(() => Date.now() > until, 2000);

    // Both instances, at once, until one of them probes.
    const sent: Promise<Got>[] = [];
    const deadline = Date.now() + 3000;
    while (s.held.length === 0) {
      if (Date.now() > deadline) throw new Error('no probe reached the upstream');
      const round = [sendWithin(`${a.url}/x`, 5000), sendWithin(`${b.url}/x`, 5000)];
      sent.push(...round);
      await Promise.race([Promise.all(round), s.firstHeld]);
    }
    expect(u.hits.length).toBe(4);
    // While the probe is held, nothing else passes either instance.
    for (let i = 0; i < 10; i++) {
      const round = await Promise.all([sendWithin(`${a.url}/x`), sendWithin(`${b.url}/x`)]);
      for (const res of round) expectCircuitOpen(res);
    }
    expect(u.hits.length).toBe(4);
    expect(s.held).toHaveLength(1);

    s.release(200);
    const answered = await Promise.all(sent);
    expect(answered.filter((r) => r.status === 200)).toHaveLength(1); // the probe
    expect(answered.filter((r) => r.status !== 200).every(isCircuitOpen)).toBe(true);
    await waitUntil(
      () => ca.state.kind === 'closed' && cb.state.kind === 'closed',
      1500,
      "both closed by the probe's success",
    );

    // One instance probed (half-open, then closed by the probe), the other followed its verdict.
    const probed = [changesA, changesB].filter((c) => c.some((e) => e.to === 'half-open'));
    expect(probed).toHaveLength(1);
    expect(probed[0]!.map((e) => [e.to, e.reason])).toEqual([
      ['half-open', 'reset-timeout'],
      ['closed', 'probe-success'],
    ]);
    const follower = probed[0] === changesA ? changesB : changesA;
    expect(follower.map((e) => [e.to, e.reason])).toEqual([['closed', 'peer']]);

    // Traffic flows through both again.
    const [ra, rb] = await Promise.all([send(`${a.url}/x`), send(`${b.url}/x`)]);
    expect([ra.status, rb.status]).toEqual([200, 200]);
    expect(u.hits.length).toBe(6);
  });

  it('`shared: false` keeps a service circuit local although the gateway has `redis`', async () => {
    const local = serviceName();
    const shared = serviceName();
    const u = await up('u', reply(500));
    const cfg: GatewayConfig = {
      // The local service first: its news, if any, would come before the shared one's.
      services: {
        [local]: { targets: [u.url], ...PLAIN, breaker: { ...BREAKER, shared: false } },
        [shared]: { targets: [u.url], ...PLAIN, breaker: BREAKER },
        [canaryOf(shared)]: { targets: [u.url], ...PLAIN, breaker: BREAKER },
      },
      routes: [
        { path: '/l/**', service: local },
        { path: '/s/**', service: shared },
      ],
      redis: SHARED_REDIS,
    };
    const a = await gatewayOf(cfg);
    const b = await gatewayOf(cfg);
    await untilSharing(shared, a, b);

    expect(await drive(`${a.url}/l/x`, 3)).toEqual([500, 500, 500]);
    expect(await drive(`${a.url}/s/x`, 3)).toEqual([500, 500, 500]);
    expect(a.gateway.breaker(local)!.state.kind).toBe('open');
    expect(a.gateway.breaker(shared)!.state.kind).toBe('open');

    // B hears of the shared circuit (so A's news has arrived), never of the local one.
    await waitUntil(
      () => b.gateway.breaker(shared)!.state.kind === 'open',
      1500,
      'B learns of the shared circuit',
    );
    expect(b.gateway.breaker(local)!.state.kind).toBe('closed');
    expect(await redisCommand(SHARED_REDIS_PORT, ['EXISTS', keyOf(shared)])).toBe(1);
    expect(await redisCommand(SHARED_REDIS_PORT, ['EXISTS', keyOf(local)])).toBe(0);
    const res = await send(`${b.url}/l/x`);
    expect(res.status).toBe(500); // the upstream's own answer: B's local circuit let it through
    expect(res.headers['x-upstream']).toBe('u');
    expect(u.hits.length).toBe(7);

    // A later instance reads the shared circuit's key, and has none for the local one.
    const c = await gatewayOf(cfg);
    await waitUntil(
      () => c.gateway.breaker(shared)!.state.kind === 'open',
      1500,
      'C reads the shared circuit from Redis',
    );
    expect(c.gateway.breaker(local)!.state.kind).toBe('closed');
  });
});

describe("sharing through a Redis of the test's own (redis-server on a free port)", () => {
  it('a gateway subscribes to the breaker channel once connected', async () => {
    const redis = await privateRedis();
    const name = `svc${randomUUID().slice(0, 8)}`;
    const u = await up('u');
    const g = await gatewayOf(config(name, [u.url], BREAKER, { redis: redis.url }));
    await waitFor(() => connected(g.gateway.breaker(name)!), 3000);
    await eventually(
      async () => {
        const [, count] = (await redisCommand(redis.port, ['PUBSUB', 'NUMSUB', CHANNEL])) as [
          string,
          number,
        ];
        return count === 1;
      },
      1500,
      `one subscriber on ${CHANNEL}`,
    );
  });

  it('does not report Redis unavailable when its subscriber connection is ready before its command connection', async () => {
    const redis = await privateRedis();
    // The first connection (the command one, opened first) answers 300 ms late.
    const proxy = await delayingProxy(redis.port, 300);
    const log = recordingLogger();
    const name = `svc${randomUUID().slice(0, 8)}`;
    const u = await up('u');
    const g = await gatewayOf(config(name, [u.url], BREAKER, { redis: proxy.url, logger: log }));
    await waitFor(() => connected(g.gateway.breaker(name)!), 3000);
    await waitFor(() => proxy.connections === 2, 3000);
    expect(log.entries.filter((e) => e.level === 'warn' || e.level === 'error')).toEqual([]);
  });

  it('Redis killed while traffic flows: no 500 from the gateway, nothing hangs, each instance opens alone; sharing resumes once Redis is back', async () => {
    const redis = await privateRedis();
    const name = `svc${randomUUID().slice(0, 8)}`;
    const s = controlled(200);
    const u = await up('u', s.answer);
    const cfg = config(name, [u.url], BREAKER, { redis: redis.url });
    const a = await gatewayOf(cfg);
    const b = await gatewayOf(cfg);
    const ca = a.gateway.breaker(name)!;
    const cb = b.gateway.breaker(name)!;
    await waitFor(() => connected(ca) && connected(cb), 3000);
    const changesA = stateChanges(a, name);
    const changesB = stateChanges(b, name);

    // Jest's sandbox has a process object of its own: the real one is the main context's.
    const realProcess = vm.runInThisContext('process') as NodeJS.Process;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    realProcess.on('unhandledRejection', onUnhandled);
    try {
      const got: { via: 'a' | 'b'; res: Got; ms: number; failing: boolean }[] = [];
      const pid = redis.pid;
      let killing: Promise<void> | undefined;
      // 25 rounds of 4 requests at once, 2 to each instance: the upstream answers 200 for the
      // first 10 rounds, 500 after. Redis is killed during the 3rd round.
      for (let round = 0; round < 25; round++) {
        if (round === 10) s.set(500);
        const failing = round >= 10;
        const batch = (['a', 'b', 'a', 'b'] as const).map(async (via) => {
          const started = Date.now();
          const res = await sendWithin(`${(via === 'a' ? a : b).url}/x`, 3000);
          got.push({ via, res, ms: Date.now() - started, failing });
        });
        if (round === 2) killing = redis.kill('SIGKILL');
        await Promise.all(batch);
        if (round === 2) {
          await killing;
          expect(redis.pid).toBeUndefined();
          // Both instances notice (their connections are refused now).
          await waitFor(() => !connected(ca) && !connected(cb), 2000);
        }
      }
      expect(pid).toBeDefined();
      expect(got).toHaveLength(100);

      // Nothing hung, nothing failed at the client, the gateway answered no 500 of its own.
      expect(got.filter((g) => g.res.status === 0).map((g) => g.res.error?.message)).toEqual([]);
      expect(Math.max(...got.map((g) => g.ms))).toBeLessThan(3000);
      const kinds = got.map(({ res }) =>
        isCircuitOpen(res)
          ? 'open'
          : res.headers['x-upstream'] === 'u' && (res.status === 200 || res.status === 500)
            ? `upstream ${res.status}`
            : `other ${res.status}`,
      );
      expect(kinds.filter((k) => k.startsWith('other'))).toEqual([]);
      // While the upstream was well, every request passed: no circuit got in the way.
      expect(got.filter((g) => !g.failing).every((g) => g.res.status === 200)).toBe(true);

      for (const [via, breaker, changes] of [
        ['a', ca, changesA],
        ['b', cb, changesB],
      ] as const) {
        const failing = got.filter((g) => g.via === via && g.failing);
        const passed = failing.filter((g) => g.res.status === 500).length;
        // failureThreshold failures open it (one more may have been in flight at once).
        expect(passed).toBeGreaterThanOrEqual(3);
        expect(passed).toBeLessThanOrEqual(4);
        expect(failing.slice(-20).every((g) => isCircuitOpen(g.res))).toBe(true);
        expect(breaker.state.kind).toBe('open');
        // Each opened on its own failures, not on news from the other.
        expect(changes.map((e) => [e.from, e.to, e.reason])).toEqual([
          ['closed', 'open', 'failure-threshold'],
        ]);
      }
      expect(u.hits.length).toBe(40 + kinds.filter((k) => k === 'upstream 500').length);
      expect(connected(ca) || connected(cb)).toBe(false); // still down

      // Redis back on the same port: both reconnect (backoff up to 2 s) and share again.
      await redis.restart();
      await waitUntil(() => connected(ca) && connected(cb), 5000, 'both reconnected to Redis');
      const deadline = Date.now() + 3000;
      for (;;) {
        ca.close();
        cb.close();
        await nextMillisecond();
        ca.open();
        try {
          await waitFor(() => untilOf(cb) !== undefined && untilOf(cb) === untilOf(ca), 500);
          break;
        } catch (err) {
          if (Date.now() > deadline) {
            throw new Error(`B did not learn of A's open after Redis came back: ${String(err)}`, {
              cause: err,
            });
          }
        }
      }
      // And a close (carried by the channel alone) from B reaches A.
      await nextMillisecond();
      cb.close();
      await waitUntil(() => ca.state.kind === 'closed', 1500, "A learns of B's close");
      s.set(200);
      const res = await send(`${a.url}/x`);
      expect(res.status).toBe(200);
      expect(res.headers['x-upstream']).toBe('u');
      expect(unhandled).toEqual([]);
    } finally {
      realProcess.off('unhandledRejection', onUnhandled);
    }
  });

  it('a close made while this instance could not reach Redis is announced once it can: the stale open key goes', async () => {
    const redis = await privateRedis();
    const link = await partitionable(redis.port);
    const name = `svc${randomUUID().slice(0, 8)}`;
    const u = await up('u');
    const cfg = config(name, [u.url], BREAKER, { redis: link.url });
    const a = await gatewayOf(cfg);
    const ca = a.gateway.breaker(name)!;
    await waitFor(() => connected(ca), 3000);
    const storedState = () => redisCommand(redis.port, ['GET', keyOf(name)]);
    ca.open(20_000);
    await eventually(async () => (await storedState()) !== null, 2000, 'the open state stored');
    // A loses Redis (Redis itself stays up, with the key): its close cannot DEL the key.
    link.cut();
    await waitFor(() => !connected(ca), 2000);
    ca.close();
    expect(await storedState()).not.toBeNull();
    link.heal();
    await waitUntil(() => connected(ca), 5000, 'A reconnected to Redis');
    await eventually(async () => (await storedState()) === null, 2000, 'the stale key deleted');
    // An instance that starts now finds nothing to reopen from.
    const c = await gatewayOf({ ...cfg, redis: redis.url });
    const cc = c.gateway.breaker(name)!;
    await waitFor(() => connected(cc), 3000);
    expect(cc.state.kind).toBe('closed');
    expect((await send(`${c.url}/x`)).status).toBe(200);
  });
});
