import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayConfig } from '@turnpike/gateway';
import { listen, startGateway, type GatewayHarness, type Running } from './helpers/servers';
import { closersAfterEach } from './helpers/outcomes';

const closers = closersAfterEach();

/** The trace headers each upstream request carried. */
interface Seen {
  traceparent: string | undefined;
  tracestate: string | undefined;
}

async function upstream(seen: Seen[], status = 200): Promise<Running> {
  const u = await listen((req: IncomingMessage, res: ServerResponse) => {
    seen.push({
      traceparent: req.headers.traceparent as string | undefined,
      tracestate: req.headers.tracestate as string | undefined,
    });
    res.writeHead(status).end('ok');
  });
  closers.push(() => u.close());
  return u;
}

async function gatewayOf(config: GatewayConfig): Promise<GatewayHarness> {
  const g = await startGateway(config);
  closers.push(() => g.close());
  return g;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;
const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

function parts(header: string | undefined): { trace: string; span: string; flags: string } {
  const m = TRACEPARENT.exec(header ?? '');
  if (m === null) throw new Error(`not a traceparent: ${String(header)}`);
  return { trace: m[1]!, span: m[2]!, flags: m[3]! };
}

describe('W3C trace context, without OpenTelemetry', () => {
  let seen: Seen[];
  let g: GatewayHarness;
  beforeEach(async () => {
    seen = [];
    const up = await upstream(seen);
    g = await gatewayOf({
      services: { svc: { targets: [up.url] } },
      routes: [{ path: '/x', service: 'svc' }],
      tracing: { opentelemetry: false },
    });
  });

  test('a valid traceparent is kept: the same trace, a child span id upstream, tracestate passed on', async () => {
    const res = await fetch(`${g.url}/x`, {
      headers: {
        traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`,
        tracestate: 'vendor=abc,other=1',
      },
    });
    expect(res.status).toBe(200);
    const up = parts(seen[0]!.traceparent);
    expect(up.trace).toBe(CALLER_TRACE);
    expect(up.span).not.toBe(CALLER_SPAN);
    expect(up.span).not.toBe('0000000000000000');
    expect(up.flags).toBe('01');
    expect(seen[0]!.tracestate).toBe('vendor=abc,other=1');
  });

  test('the unsampled flag is kept', async () => {
    await fetch(`${g.url}/x`, { headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-00` } });
    expect(parts(seen[0]!.traceparent)).toMatchObject({ trace: CALLER_TRACE, flags: '00' });
  });

  test.each([
    ['garbage', 'not-a-traceparent'],
    ['an all-zero trace id', `00-${'0'.repeat(32)}-${CALLER_SPAN}-01`],
    ['an all-zero span id', `00-${CALLER_TRACE}-${'0'.repeat(16)}-01`],
    ['upper-case hex', `00-${CALLER_TRACE.toUpperCase()}-${CALLER_SPAN}-01`],
    ['version ff', `ff-${CALLER_TRACE}-${CALLER_SPAN}-01`],
    ['version 00 with a suffix', `00-${CALLER_TRACE}-${CALLER_SPAN}-01-extra`],
  ])(
    'an invalid traceparent (%s) is replaced by a new trace, its tracestate dropped',
    async (_why, header) => {
      await fetch(`${g.url}/x`, { headers: { traceparent: header, tracestate: 'vendor=abc' } });
      const up = parts(seen[0]!.traceparent);
      expect(up.trace).not.toBe(CALLER_TRACE);
      expect(up.trace).not.toBe('0'.repeat(32));
      expect(seen[0]!.tracestate).toBeUndefined();
    },
  );

  test('a later version with more fields is read (its known parts)', async () => {
    await fetch(`${g.url}/x`, {
      headers: { traceparent: `01-${CALLER_TRACE}-${CALLER_SPAN}-01-future` },
    });
    expect(parts(seen[0]!.traceparent).trace).toBe(CALLER_TRACE);
  });

  test('without a traceparent a trace starts here; each request gets its own', async () => {
    await fetch(`${g.url}/x`);
    await fetch(`${g.url}/x`);
    const [a, b] = seen.map((s) => parts(s.traceparent));
    expect(a!.trace).not.toBe(b!.trace);
    expect(seen[0]!.tracestate).toBeUndefined();
  });

  test("the trace id is in the gateway's problem bodies", async () => {
    const res = await fetch(`${g.url}/nowhere`, {
      headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` },
    });
    expect(res.status).toBe(404);
    const body = (await res.json()) as { status: number; traceId: string; requestId: unknown };
    expect(body).toMatchObject({ status: 404, traceId: CALLER_TRACE });
    expect(typeof body.requestId).toBe('string');
  });
});

test('every retry carries its own span id, in the same trace', async () => {
  const seen: Seen[] = [];
  const up = await upstream(seen, 503);
  const g = await gatewayOf({
    services: {
      svc: { targets: [up.url], retries: { attempts: 2, backoff: { baseMs: 1, maxMs: 2 } } },
    },
    routes: [{ path: '/x', service: 'svc' }],
    tracing: { opentelemetry: false },
  });
  const res = await fetch(`${g.url}/x`, {
    headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` },
  });
  expect(res.status).toBe(503);
  expect(seen).toHaveLength(3);
  const tries = seen.map((s) => parts(s.traceparent));
  expect(new Set(tries.map((t) => t.trace))).toEqual(new Set([CALLER_TRACE]));
  expect(new Set(tries.map((t) => t.span)).size).toBe(3);
});

test('without tracing, traceparent passes through untouched and problems carry no trace id', async () => {
  const seen: Seen[] = [];
  const up = await upstream(seen);
  const g = await gatewayOf({
    services: { svc: { targets: [up.url] } },
    routes: [{ path: '/x', service: 'svc' }],
  });
  const header = `00-${CALLER_TRACE}-${CALLER_SPAN}-01`;
  await fetch(`${g.url}/x`, { headers: { traceparent: header } });
  expect(seen[0]!.traceparent).toBe(header);
  const problem = (await (
    await fetch(`${g.url}/nowhere`, { headers: { traceparent: header } })
  ).json()) as object;
  expect(problem).not.toHaveProperty('traceId');
});
