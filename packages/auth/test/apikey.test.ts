import express from 'express';
import request from 'supertest';
import { ConfigError } from '@turnpike/core';
import { apiKeyAuth, hashApiKey, requireRoles, type ApiKeyOptions } from '@turnpike/auth';
import { recordingLogger } from '../../../test/helpers/outcomes';

const PLAIN = 'plain-key-0123456789abcdef';
const HASHED = 'hashed-key-0123456789abcdef';

function appWith(options: ApiKeyOptions, after: express.RequestHandler[] = []): express.Express {
  const app = express();
  app.get('/', apiKeyAuth(options), ...after, (req, res) => {
    res.json((req as unknown as { auth?: unknown }).auth ?? null);
  });
  return app;
}

const keys: ApiKeyOptions['keys'] = [
  { key: PLAIN, consumer: 'mobile', roles: ['user'] },
  { hash: hashApiKey(HASHED), consumer: 'partner', id: 'partner-1', scopes: ['orders:read'] },
];

describe('apiKeyAuth in a plain Express app', () => {
  it('knows a plain key (hashed at start) and a hashed one; sets req.auth', async () => {
    const app = appWith({ keys });
    const a = await request(app).get('/').set('x-api-key', PLAIN).expect(200);
    expect(a.body).toMatchObject({
      subject: 'mobile',
      consumer: 'mobile',
      roles: ['user'],
      method: 'api-key',
    });
    expect((a.body as { keyId: string }).keyId).toBe(hashApiKey(PLAIN).slice(7, 19));
    const b = await request(app).get('/').set('x-api-key', HASHED).expect(200);
    expect(b.body).toMatchObject({
      subject: 'partner',
      keyId: 'partner-1',
      scopes: ['orders:read'],
    });
  });

  it('answers no key and an unknown key 401 with a challenge naming the header; the key is never logged', async () => {
    const log = recordingLogger();
    const app = appWith({ keys, logger: log });
    const none = await request(app).get('/').expect(401);
    expect(none.headers['www-authenticate']).toBe('ApiKey realm="api", header="x-api-key"');
    const wrong = await request(app)
      .get('/')
      .set('x-api-key', 'not-a-key-of-ours-at-all')
      .expect(401);
    expect(wrong.body).toMatchObject({ type: 'urn:turnpike:problem:unauthenticated' });
    expect(JSON.stringify(log.entries)).not.toContain('not-a-key-of-ours-at-all');
    expect(JSON.stringify(wrong.body)).not.toContain('not-a-key-of-ours-at-all');
  });

  it('reads the query parameter only when enabled', async () => {
    await request(appWith({ keys })).get(`/?api_key=${PLAIN}`).expect(401);
    await request(appWith({ keys, query: 'api_key' }))
      .get(`/?api_key=${PLAIN}`)
      .expect(200);
  });

  it('resolves unknown keys with a lookup, sync or async; a failing lookup is 503, not 401 or 500', async () => {
    const db = new Map([['db-key-0123456789abcdef', { consumer: 'batch', roles: ['ops'] }]]);
    const app = appWith({
      keys,
      lookup: (k) =>
        k === 'explode-0123456789'
          ? Promise.reject(new Error('database down'))
          : Promise.resolve(db.get(k)),
    });
    const r = await request(app).get('/').set('x-api-key', 'db-key-0123456789abcdef').expect(200);
    expect(r.body).toMatchObject({ subject: 'batch', roles: ['ops'] });
    await request(app).get('/').set('x-api-key', 'nobody-0123456789').expect(401);
    const down = await request(app).get('/').set('x-api-key', 'explode-0123456789').expect(503);
    expect(down.body).toMatchObject({ type: 'urn:turnpike:problem:auth-unavailable' });
    const sync = appWith({
      lookup: (k) => (k === 'sync-key-0123456789' ? { consumer: 's' } : undefined),
    });
    await request(sync).get('/').set('x-api-key', 'sync-key-0123456789').expect(200);
  });

  it('a lookup owner of the wrong shape is a 503 and a log line, never roles made of letters', async () => {
    const log = recordingLogger();
    const app = appWith({
      logger: log,
      lookup: (k) =>
        Promise.resolve(
          k === 'odd-owner-0123456789' ? ({ consumer: 'x', roles: 'admin' } as never) : undefined,
        ),
    });
    await request(app).get('/').set('x-api-key', 'odd-owner-0123456789').expect(503);
    expect(log.entries.filter((e) => e.level === 'error')).toHaveLength(1);
  });

  it('with requireRoles: 403 for a key without the role', async () => {
    const app = appWith({ keys }, [requireRoles('user')]);
    await request(app).get('/').set('x-api-key', PLAIN).expect(200);
    await request(app).get('/').set('x-api-key', HASHED).expect(403);
  });

  it.each<[string, Partial<ApiKeyOptions>, string]>([
    ['a short key', { keys: [{ key: 'short', consumer: 'a' }] }, 'apiKeyAuth.keys[0].key'],
    ['a bad hash', { keys: [{ hash: 'md5:abc', consumer: 'a' }] }, 'apiKeyAuth.keys[0].hash'],
    ['no consumer', { keys: [{ key: PLAIN } as never] }, 'apiKeyAuth.keys[0].consumer'],
    [
      'a key twice',
      {
        keys: [
          { key: PLAIN, consumer: 'a' },
          { hash: hashApiKey(PLAIN), consumer: 'b' },
        ],
      },
      'apiKeyAuth.keys[1]',
    ],
    ['neither keys nor a lookup', { keys: undefined }, 'apiKeyAuth'],
    ['a header that is no header name', { header: 'x api key' }, 'apiKeyAuth.header'],
  ])('refuses %s, naming the field (and never echoing a key)', (_what, over, path) => {
    let caught: unknown;
    try {
      apiKeyAuth({ keys, ...over });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).path).toBe(path);
    expect((caught as Error).message).not.toContain(PLAIN);
  });
});
