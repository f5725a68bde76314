import type { IncomingMessage, ServerResponse } from 'node:http';
import { SpanKind, trace } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import { listen, startGateway, waitFor, type GatewayHarness } from './helpers/servers';
import { closersAfterEach, recordingLogger } from './helpers/outcomes';

const closers = closersAfterEach();
const exporter = new InMemorySpanExporter();
/** A span processor that throws when told to: an SDK that misbehaves. */
const faulty = { onStart: false, onEnd: false };
const throwing = {
  onStart() {
    if (faulty.onStart) throw new Error('processor failed on start');
  },
  onEnd() {
    if (faulty.onEnd) throw new Error('processor failed on end');
  },
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};

beforeAll(() => {
  const provider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(exporter), throwing],
  });
  expect(trace.setGlobalTracerProvider(provider)).toBe(true);
});
afterAll(() => trace.disable());
afterEach(() => {
  exporter.reset();
  faulty.onStart = false;
  faulty.onEnd = false;
});

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

/** A gateway traced through the global tracer, over an upstream answering 503 `failures` times, then 200. */
async function traced(
  failures = 0,
  logger?: ReturnType<typeof recordingLogger>,
): Promise<{ g: GatewayHarness; seen: string[] }> {
  const seen: string[] = [];
  let left = failures;
  const up = await listen((req: IncomingMessage, res: ServerResponse) => {
    seen.push(req.headers.traceparent as string);
    res.writeHead(left-- > 0 ? 503 : 200).end('ok');
  });
  closers.push(() => up.close());
  const g = await startGateway({
    services: {
      users: { targets: [up.url], retries: { attempts: 2, backoff: { baseMs: 1, maxMs: 2 } } },
    },
    routes: [{ name: 'user', path: '/users/:id', service: 'users' }],
    tracing: true,
    ...(logger === undefined ? {} : { logger }),
  });
  closers.push(() => g.close());
  return { g, seen };
}

function spans(): { server: ReadableSpan; clients: ReadableSpan[] } {
  const all = exporter.getFinishedSpans();
  const server = all.filter((s) => s.kind === SpanKind.SERVER);
  expect(server).toHaveLength(1);
  return { server: server[0]!, clients: all.filter((s) => s.kind === SpanKind.CLIENT) };
}

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

test("a request's server span is the caller's child; its upstream call's span is the server span's child and the parent upstream", async () => {
  const { g, seen } = await traced();
  const res = await fetch(`${g.url}/users/7?secret=1`, {
    headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` },
  });
  expect(res.status).toBe(200);
  await waitFor(() => exporter.getFinishedSpans().length === 2);
  const { server, clients } = spans();
  expect(server.spanContext().traceId).toBe(CALLER_TRACE);
  expect(parentOf(server)).toBe(CALLER_SPAN);
  expect(server.name).toBe('GET /users/:id');
  expect(server.attributes).toMatchObject({
    'http.request.method': 'GET',
    'http.route': '/users/:id',
    'http.response.status_code': 200,
    'url.path': '/users/7',
  });
  expect(clients).toHaveLength(1);
  const client = clients[0]!;
  expect(client.spanContext().traceId).toBe(CALLER_TRACE);
  expect(parentOf(client)).toBe(server.spanContext().spanId);
  expect(client.attributes).toMatchObject({
    'http.request.method': 'GET',
    'server.address': '127.0.0.1',
    'http.response.status_code': 200,
  });
  expect(String(client.attributes['url.full'])).toMatch(/\/users\/7$/); // no query
  // What the upstream saw: the client span as its parent.
  expect(seen).toEqual([`00-${CALLER_TRACE}-${client.spanContext().spanId}-01`]);
});

test('a retried request: one client span per try, each the parent of its own try upstream', async () => {
  const { g, seen } = await traced(2);
  expect((await fetch(`${g.url}/users/1`)).status).toBe(200);
  await waitFor(() => exporter.getFinishedSpans().length === 4);
  const { server, clients } = spans();
  expect(parentOf(server)).toBeUndefined(); // the trace started here
  expect(clients).toHaveLength(3);
  for (const c of clients) {
    expect(c.spanContext().traceId).toBe(server.spanContext().traceId);
    expect(parentOf(c)).toBe(server.spanContext().spanId);
  }
  expect(clients.map((c) => c.attributes['http.response.status_code'])).toEqual([503, 503, 200]);
  expect(clients.map((c) => c.status.code)).toEqual([2, 2, 0]); // ERROR, ERROR, UNSET
  expect(seen).toEqual(
    clients.map((c) => `00-${c.spanContext().traceId}-${c.spanContext().spanId}-01`),
  );
});

test("a request the router refuses has a span too, with the problem's trace id", async () => {
  const { g } = await traced();
  const res = await fetch(`${g.url}/nowhere`);
  expect(res.status).toBe(404);
  const body = (await res.json()) as { traceId: string };
  await waitFor(() => exporter.getFinishedSpans().length === 1);
  const { server, clients } = spans();
  expect(clients).toEqual([]);
  expect(server.spanContext().traceId).toBe(body.traceId);
  expect(server.attributes['http.response.status_code']).toBe(404);
});

test.each([
  ['starts', 'onStart'],
  ['ends', 'onEnd'],
] as const)(
  'an SDK that throws when a span %s costs the span, not the request: answered, logged, trace id kept',
  async (_when, hook) => {
    const logger = recordingLogger();
    const { g, seen } = await traced(0, logger);
    faulty[hook] = true;
    const res = await fetch(`${g.url}/users/3`, {
      headers: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` },
    });
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(new RegExp(`^00-${CALLER_TRACE}-[0-9a-f]{16}-01$`));
    await waitFor(() => logger.entries.some((e) => e.message.startsWith('tracing failed')));
    // The gateway goes on serving.
    faulty[hook] = false;
    expect((await fetch(`${g.url}/users/4`)).status).toBe(200);
  },
);
