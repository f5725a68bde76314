import { parseTarget, type Logger, type Target } from '@turnpike/core';
import { closersAfterEach, recordOutcomes, startRouter } from './helpers/outcomes';
import { deadPort } from './helpers/upstreams';

const closers = closersAfterEach();

/** A logger that keeps its error lines. */
function errorLog(): { logger: Logger; errors: string[] } {
  const errors: string[] = [];
  const none = (): void => {};
  return {
    errors,
    logger: { error: (message) => void errors.push(message), warn: none, info: none, debug: none },
  };
}

async function deadTarget(): Promise<Target> {
  return parseTarget(`http://127.0.0.1:${await deadPort()}`, 'target');
}

describe('the target picker seam, when the picker misbehaves', () => {
  it('a pick that throws on the retry (from the backoff timer) is a logged 500, not a crash', async () => {
    const dead = await deadTarget();
    let calls = 0;
    const { logger, errors } = errorLog();
    const h = await startRouter({
      logger,
      services: {
        svc: {
          target: (_req, tried) => {
            calls++;
            if (tried.length > 0) throw new Error('picker broke');
            return dead;
          },
        },
      },
      routes: [{ path: '/**', service: 'svc' }],
    });
    closers.push(() => h.close());
    const res = await fetch(`${h.url}/x`);
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(calls).toBe(2);
    expect(errors).toContain('target picker failed');
  });

  it('attemptStarted and attemptEnded that throw are logged; the request still gets its answer', async () => {
    const dead = await deadTarget();
    const { logger, errors } = errorLog();
    const h = await startRouter({
      logger,
      services: {
        svc: {
          retries: false,
          target: {
            pick: () => dead,
            attemptStarted: () => {
              throw new Error('started broke');
            },
            attemptEnded: () => {
              throw new Error('ended broke');
            },
          },
        },
      },
      routes: [{ path: '/**', service: 'svc' }],
    });
    closers.push(() => h.close());
    const res = await fetch(`${h.url}/x`);
    expect(res.status).toBe(502);
    expect(errors.filter((e) => e === 'target picker failed')).toHaveLength(2);
  });

  it('a retry whose pick finds no target answers the failure it retried (502), not a 503', async () => {
    const dead = await deadTarget();
    const h = await startRouter({
      services: { svc: { target: (_req, tried) => (tried.length === 0 ? dead : undefined) } },
      routes: [{ path: '/**', service: 'svc' }],
    });
    closers.push(() => h.close());
    const log = recordOutcomes(h.router);
    const res = await fetch(`${h.url}/x`);
    expect(res.status).toBe(502);
    expect(res.headers.get('retry-after')).toBeNull();
    expect(log.list).toHaveLength(1);
    expect(log.list[0]!.kind).toBe('refused');
    expect(log.list[0]!.retries).toBe(1);
  });
});
