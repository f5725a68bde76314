import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import winston from 'winston';
import { createAccessLog, jsonLogger, LineBuffer, type AccessLogEntry } from '@turnpike/metrics';
import { waitFor } from '../../../test/helpers/servers';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turnpike-json-logger-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const lines = (file: string) =>
  fs.existsSync(file)
    ? fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
    : [];

test('jsonLogger(file): one JSON line per entry, appended, the lines of a tick written together', async () => {
  const file = path.join(dir, 'access.log');
  fs.writeFileSync(file, '{"before":true}\n');
  const logger = jsonLogger(file);
  for (let i = 0; i < 3; i++) logger.info('request', { n: i, path: '/x' });
  expect(lines(file)).toHaveLength(1); // not yet: written on the next turn of the loop
  await waitFor(() => lines(file).length === 4);
  expect(lines(file).map((l) => JSON.parse(l) as unknown)).toEqual([
    { before: true },
    { level: 'info', message: 'request', n: 0, path: '/x' },
    { level: 'info', message: 'request', n: 1, path: '/x' },
    { level: 'info', message: 'request', n: 2, path: '/x' },
  ]);
});

test('jsonLogger(stream) writes to the stream', async () => {
  const out = new PassThrough();
  const chunks: string[] = [];
  out.on('data', (c: Buffer) => chunks.push(c.toString('utf8')));
  jsonLogger(out).info('request', { status: 200 });
  await waitFor(() => chunks.join('').endsWith('\n'));
  expect(JSON.parse(chunks.join(''))).toEqual({ level: 'info', message: 'request', status: 200 });
});

test('a destination that does not keep up: lines beyond maxBufferBytes are dropped and counted, not held', () => {
  const written: string[] = [];
  let release: (() => void) | undefined;
  const buffer = new LineBuffer(
    {
      // The first write never completes until released: a stalled disk.
      write: (data, done) => {
        written.push(data);
        release = () => done();
      },
      writeSync: (data) => void written.push(data),
    },
    100,
  );
  const line = `${'x'.repeat(39)}\n`; // 40 bytes
  for (let i = 0; i < 2; i++) buffer.write(line);
  buffer.flushSync();
  expect(written).toEqual([line + line]);
  for (let i = 0; i < 5; i++) buffer.write(line);
  expect(buffer.dropped).toBe(3); // 2 × 40 fit in 100, the other 3 are dropped
  buffer.destroy(); // flushes what it holds
  expect(written).toEqual([line + line, line + line]);
  release?.();
});

test("the access log writes a jsonLogger's lines straight into its buffer, and through winston once the logger is changed", async () => {
  const file = path.join(dir, 'direct.log');
  const logger = jsonLogger(file);
  const log = createAccessLog({ logger });
  const entry = (status: number) =>
    ({
      time: 't',
      requestId: 'r',
      method: 'GET',
      path: '/x',
      route: 'x',
      service: 's',
      target: '',
      status,
      outcome: 'complete',
      durationMs: 1,
      upstreamMs: null,
      bytesIn: 0,
      bytesOut: 0,
      retries: 0,
    }) as unknown as AccessLogEntry;
  log.write(entry(200));
  await waitFor(() => lines(file).length === 1);
  expect(JSON.parse(lines(file)[0]!)).toMatchObject({
    level: 'info',
    message: 'request',
    status: 200,
    upstreamMs: null,
  });
  // A transport added: winston's own pipeline, to both.
  const seen: unknown[] = [];
  const extra = new PassThrough({ objectMode: true });
  extra.on('data', (info: unknown) => seen.push(info));
  logger.add(new winston.transports.Stream({ stream: extra }));
  log.write(entry(201));
  await waitFor(() => lines(file).length === 2 && seen.length === 1);
  expect(JSON.parse(lines(file)[1]!)).toMatchObject({
    level: 'info',
    message: 'request',
    status: 201,
  });
  expect(seen[0]).toMatchObject({ status: 201 });
  // The level raised above info: nothing is written at all.
  logger.remove(logger.transports[1]!);
  logger.level = 'warn';
  log.write(entry(202));
  log.write(entry(203));
  logger.level = 'info';
  log.write(entry(204));
  await waitFor(() => lines(file).length === 3);
  expect(JSON.parse(lines(file)[2]!)).toMatchObject({ status: 204 });
});
