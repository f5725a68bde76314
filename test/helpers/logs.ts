import http from 'node:http';
import { Writable } from 'node:stream';
import winston from 'winston';

/** A stream keeping every line written to it, as written. */
export function lineSink(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((l) => l !== ''),
      );
      done();
    },
  });
  return { stream, lines };
}

/** A winston JSON logger writing into memory: every line, as written. */
export function memoryLogger(): { logger: winston.Logger; lines: string[] } {
  const { stream, lines } = lineSink();
  const logger = winston.createLogger({
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream })],
  });
  return { logger, lines };
}

/** A GET with the path as given (fetch would resolve dot segments first); resolves with the status. */
export function rawGet(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ port, path, host: '127.0.0.1', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      })
      .on('error', reject);
  });
}
