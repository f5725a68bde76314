import http from 'node:http';
import path from 'node:path';
import * as express from 'express';
import winston from 'winston';
import * as metricsModule from '@turnpike/metrics';
import { listen, waitFor, type Running } from '../../../test/helpers/servers';
import { parseScrape } from '../../../test/helpers/prometheus';
import { lineSink } from '../../../test/helpers/logs';
import { edited, readReadme, runExample } from '../../../test/helpers/readme';

const { codeAfter } = readReadme(path.join(__dirname, '..', 'README.md'));

const running: Running[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
});

describe('README: the plain Express example', () => {
  it('counts by route pattern, serves the series, logs one redacted JSON line per request, and carries the trace', async () => {
    const { stream, lines } = lineSink();
    // The example's winston, its Console transport writing into memory instead of stdout.
    const memoryWinston = {
      ...winston,
      transports: {
        ...winston.transports,
        Console: function () {
          return new winston.transports.Stream({ stream });
        },
      },
    };
    const code = edited(codeAfter('### In a plain Express app'), [
      ['sampleRate: 0.1,', 'sampleRate: 1,'],
      ['app.listen(8080);', 'module.exports = { app };'],
    ]);
    const { app } = runExample(code, {
      express: (express as { default?: unknown }).default ?? express,
      winston: memoryWinston,
      '@turnpike/metrics': metricsModule,
    }) as { app: http.RequestListener };
    const host = await listen(http.createServer(app));
    running.push(host);

    const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
    for (const id of ['1', '2', '42']) {
      const res = await fetch(`${host.url}/users/${id}?token=s3cret&page=2`, {
        headers: { traceparent: `00-${trace}-00f067aa0ba902b7-01`, authorization: 'Bearer s3cret' },
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ id, trace });
      expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    }
    const scrape = await fetch(`${host.url}/metrics`);
    expect(scrape.headers.get('content-type')).toMatch(/^text\/plain/);
    const s = parseScrape(await scrape.text());
    expect(
      s.value('app_requests_total', {
        method: 'GET',
        route: '/users/:id',
        service: '',
        status: '200',
      }),
    ).toBe(3);
    expect(s.value('app_request_duration_seconds_count', { route: '/users/:id' })).toBe(3);
    expect(
      s.all('app_requests_total').filter((x) => (x.labels.route ?? '').includes('42')),
    ).toEqual([]);

    await waitFor(() => lines.length >= 3);
    const first = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(first).toMatchObject({
      message: 'request',
      method: 'GET',
      path: '/users/1?token=[REDACTED]&page=2',
      route: '/users/:id',
      status: 200,
      traceId: trace,
    });
    expect(lines.join('\n')).not.toContain('s3cret');
  });
});
