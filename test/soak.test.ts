import http from 'node:http';
import type { OutcomeKind } from '@turnpike/router';
import {
  closersAfterEach,
  countConnections,
  settledHeap,
  startRouter,
  type RouterHarness,
} from './helpers/outcomes';
import { listen, waitFor } from './helpers/servers';

const closers = closersAfterEach();

const POOL_CAP = 16;
const CONCURRENCY = 50;
const WARM_UP = 500;
const RUN = 10_000;
/** Every 10th request is aborted by its client mid-response. */
const ABORT_EVERY = 10;
/** Only a guard against a hang: the test asserts no timing. */
const DEADLINE_MS = 50_000;

const BODY = Buffer.alloc(2048, 'x');
const FIRST = Buffer.alloc(1024, 'y');

/** One request: read whole (a 2 KiB body), or destroyed by the client once its first bytes arrive. */
function one(agent: http.Agent, base: string, i: number): Promise<'ok' | 'aborted'> {
  const abort = i % ABORT_EVERY === ABORT_EVERY - 1;
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/${abort ? 'abort' : 'ok'}/${i}`, { agent }, (res) => {
      if (abort) {
        res.once('data', () => {
          req.destroy();
          resolve('aborted');
        });
        return;
      }
      let length = 0;
      res.on('data', (c: Buffer) => (length += c.length));
      res.on('end', () => {
        if (res.statusCode === 200 && length === BODY.length && res.complete) resolve('ok');
        else reject(new Error(`request ${i}: status ${res.statusCode}, ${length} bytes`));
      });
      res.on('error', reject);
    });
    req.on('error', (err) => {
      if (!abort) reject(err);
    });
  });
}

/** `count` requests numbered from `from`, `CONCURRENCY` at a time, before `deadline`. */
async function load(
  agent: http.Agent,
  base: string,
  from: number,
  count: number,
  deadline: number,
): Promise<{ ok: number; aborted: number }> {
  const done = { ok: 0, aborted: 0 };
  let next = from;
  const end = from + count;
  const worker = async (): Promise<void> => {
    while (next < end) {
      if (Date.now() > deadline) throw new Error(`soak: deadline passed at request ${next}`);
      done[await one(agent, base, next++)]++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return done;
}

it(`after ${RUN} requests with client aborts mixed in, the upstream holds at most the pool's cap and the heap is back where it was`, async () => {
  const deadline = Date.now() + DEADLINE_MS;
  const up = await listen((req, res) => {
    req.resume();
    if (req.url!.startsWith('/abort/')) {
      // Streams and never ends: only the gateway closing the connection ends it.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(FIRST);
      const t = setInterval(() => res.write('.'), 50);
      res.once('close', () => clearInterval(t));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
    res.end(BODY);
  });
  closers.push(() => up.close());
  const upstream = countConnections(up.server);

  const h: RouterHarness = await startRouter({
    services: {
      svc: { target: up.url, timeoutMs: 20_000, agent: { maxSockets: POOL_CAP } },
    },
    routes: [{ path: '/**', service: 'svc' }],
  });
  closers.push(() => h.close());
  const gateway = countConnections(h.running.server);
  const kinds = new Map<OutcomeKind, number>();
  let reported = 0;
  const dispose = h.router.onOutcome((o) => {
    reported++;
    kinds.set(o.kind, (kinds.get(o.kind) ?? 0) + 1);
  });
  closers.push(dispose);

  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  closers.push(() => agent.destroy());

  /** Quiet: every request reported, no aborted stream left upstream. */
  const quiet = async (requests: number): Promise<void> => {
    await waitFor(() => reported === requests, 10_000);
    await waitFor(() => upstream.open <= POOL_CAP && gateway.open <= CONCURRENCY, 10_000);
  };

  const warm = await load(agent, h.url, 0, WARM_UP, deadline);
  expect(warm.aborted).toBe(WARM_UP / ABORT_EVERY);
  await quiet(WARM_UP);
  const before = await settledHeap();

  const run = await load(agent, h.url, WARM_UP, RUN, deadline);
  expect(run).toEqual({ ok: RUN - RUN / ABORT_EVERY, aborted: RUN / ABORT_EVERY });
  await quiet(WARM_UP + RUN);
  const after = await settledHeap();

  // Every request reported once, as what it was.
  const total = WARM_UP + RUN;
  expect(Object.fromEntries(kinds)).toEqual({
    complete: total - total / ABORT_EVERY,
    'client-gone': total / ABORT_EVERY,
  });
  // The pool's cap held all along, and holds now.
  expect(upstream.max).toBeLessThanOrEqual(POOL_CAP);
  expect(upstream.open).toBeLessThanOrEqual(POOL_CAP);
  // Aborts really closed upstream connections (so the cap was tested under churn).
  expect(upstream.closed).toBeGreaterThanOrEqual(total / ABORT_EVERY);
  // Within the 10 % the issue allows.
  expect(after / before).toBeLessThanOrEqual(1.1);
}, 60_000);
