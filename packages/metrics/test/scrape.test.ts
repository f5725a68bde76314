import { Counter, Histogram, Registry } from 'prom-client';
import { createMetrics, DEFAULT_BUCKETS, Metrics } from '@turnpike/metrics';
import { parseScrape } from '../../../test/helpers/prometheus';

/** A registry with a bit of everything: routes with odd names, every counter, histograms, a gauge source. */
function filled(metrics: Metrics): Metrics {
  const odd = ['plain', 'with "quotes"', 'back\\slash', 'new\nline', 'ünïcode'];
  for (const [i, route] of odd.entries()) {
    metrics.observeRequest('GET', route, 'svc', 200 + i, 0.003 * (i + 1), 10 * i, 100 * i);
    metrics.observeRequest('POST', route, 'svc', 500, 2.5, 0, 0);
  }
  metrics.observeRequest('BREW', '', '', 404, 0, 0, 0);
  metrics.observeUpstream('svc', 'http://10.0.0.1:80', 0.2);
  metrics.count(metrics.retries, 'svc', 'refused');
  metrics.count(metrics.upstreamErrors, 'svc', 'reset');
  metrics.count(metrics.rateLimits, 'with "quotes"', 'limited');
  metrics.watchTargets(() => [
    { service: 'svc', target: 'http://10.0.0.1:80', healthy: true, inFlight: 3 },
  ]);
  return metrics;
}

test("scrape() writes the same samples as prom-client's own registry.metrics()", async () => {
  const m = filled(createMetrics());
  const ours = await m.scrape();
  const theirs = await m.registry.metrics();
  expect(parseScrape(ours).samples).toEqual(parseScrape(theirs).samples);
  expect(ours).toBe(theirs);
});

test('the same text when the series fill whole slices (500, 1000 of them)', async () => {
  for (const n of [500, 1000, 499]) {
    const m = createMetrics();
    for (let r = 0; r < n; r++) m.count(m.retries, `s${r}`, 'reset');
    expect(await m.scrape()).toBe(await m.registry.metrics());
  }
});

test('with many series the scrape lets the event loop turn between slices', async () => {
  const m = createMetrics();
  for (let r = 0; r < 3000; r++) m.observeRequest('GET', `r${r}`, 's', 200, 0.01, 1, 1);
  let turns = 0;
  const timer = setInterval(() => turns++, 0);
  const text = await m.scrape();
  clearInterval(timer);
  expect(parseScrape(text).all('gateway_requests_total')).toHaveLength(3000);
  expect(turns).toBeGreaterThan(5);
});

test("a registry with default labels is scraped by prom-client's own writer, labels included", async () => {
  const registry = new Registry();
  registry.setDefaultLabels({ instance: 'a' });
  const m = filled(new Metrics({ registry }));
  const s = parseScrape(await m.scrape());
  expect(s.value('gateway_requests_total', { method: 'GET', route: 'plain', instance: 'a' })).toBe(
    1,
  );
});

test("the gateway's in-place series give prom-client's own numbers: the same values through its public API", async () => {
  const ours = createMetrics();
  const theirs = new Registry();
  const requests = new Counter({
    name: 'gateway_requests_total',
    help: 'x',
    labelNames: ['method', 'route', 'service', 'status'],
    registers: [theirs],
  });
  const duration = new Histogram({
    name: 'gateway_request_duration_seconds',
    help: 'x',
    labelNames: ['method', 'route', 'service'],
    buckets: [...DEFAULT_BUCKETS],
    registers: [theirs],
  });
  // On a bound, between bounds, 0, above every bound, repeated.
  for (const seconds of [0.005, 0.0051, 0, 61, 120, 0.005, 2.5]) {
    ours.observeRequest('GET', 'users', 'svc', 200, seconds, 0, 0);
    requests.inc({ method: 'GET', route: 'users', service: 'svc', status: '200' });
    duration.observe({ method: 'GET', route: 'users', service: 'svc' }, seconds);
  }
  const pick = async (registry: Registry, name: string) =>
    parseScrape(await registry.getSingleMetricAsString(name)).samples;
  for (const name of ['gateway_requests_total', 'gateway_request_duration_seconds']) {
    expect(await pick(ours.registry, name)).toEqual(await pick(theirs, name));
  }
});

test('after a reset of the registry the series count again from zero', async () => {
  const m = createMetrics();
  m.observeRequest('GET', 'r', 's', 200, 0.01, 10, 10);
  m.registry.resetMetrics();
  m.observeRequest('GET', 'r', 's', 200, 0.01, 10, 10);
  m.observeRequest('GET', 'r', 's', 200, 0.01, 10, 10);
  const s = parseScrape(await m.scrape());
  expect(s.value('gateway_requests_total', { route: 'r' })).toBe(2);
  expect(s.value('gateway_request_duration_seconds_count', { route: 'r' })).toBe(2);
  expect(s.value('gateway_request_bytes_sum', { route: 'r' })).toBe(20);
});
