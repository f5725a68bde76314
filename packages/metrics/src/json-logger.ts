import fs from 'node:fs';
import { Writable } from 'node:stream';
import winston from 'winston';

const MESSAGE = Symbol.for('message');

/** Options of {@link jsonLogger}. */
export interface JsonLoggerOptions {
  /**
   * Lines waiting to be written beyond this many bytes (a stalled disk or pipe) are dropped
   * and counted, rather than held in memory without bound. Default 16 MiB.
   */
  maxBufferBytes?: number;
  /** Lines wait at most this many ms before they are written (sooner when 64 KiB wait). Default 100. */
  flushMs?: number;
}

/** Buffered bytes that are written at once, without waiting for the timer. */
const FLUSH_BYTES = 65536;

/** The buffers still open, flushed when the process exits. */
const LIVE = new Set<LineBuffer>();
let hooked = false;

/**
 * Lines written together: one write per 100 ms (or per 64 KiB) instead of one per line. What a
 * per-request log line costs is mostly its write (a system call, on libuv's thread pool for a
 * file); gathered, a write serves hundreds of lines. Flushed synchronously when the process
 * exits, and by destroy().
 */
export class LineBuffer extends Writable {
  /** Lines dropped because the destination did not keep up. */
  dropped = 0;
  private chunks: string[] = [];
  private bytes = 0;
  private scheduled = false;
  private inFlight = false;

  constructor(
    private readonly sink: {
      write(data: string, done: (err?: unknown) => void): void;
      writeSync(data: string): void;
    },
    private readonly maxBufferBytes: number,
    /** Lines wait at most this long before they are written (or until 64 KiB are waiting). */
    private readonly flushMs = 100,
  ) {
    super({ decodeStrings: false });
    // Writable's own machinery is skipped: a line is a string pushed on a list.
    this.write = ((chunk: unknown) => {
      const line = String(chunk);
      if (this.bytes + line.length > this.maxBufferBytes) {
        this.dropped++;
        return true;
      }
      this.chunks.push(line);
      this.bytes += line.length;
      if (this.bytes >= FLUSH_BYTES) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setTimeout(this.flushLater, this.flushMs).unref();
      }
      return true;
    }) as Writable['write'];
    LIVE.add(this);
    if (!hooked) {
      hooked = true;
      // One listener for every buffer: whatever is left is written as the process exits.
      process.once('exit', () => {
        for (const buffer of LIVE) buffer.flushSync();
      });
    }
  }

  private readonly flushLater = (): void => {
    this.scheduled = false;
    this.flush();
  };

  private flush(): void {
    if (this.inFlight || this.bytes === 0) return;
    const data = this.chunks.join('');
    this.chunks = [];
    this.bytes = 0;
    this.inFlight = true;
    this.sink.write(data, () => {
      this.inFlight = false;
      if (this.bytes >= FLUSH_BYTES) this.flush();
      else if (this.bytes > 0 && !this.scheduled) {
        this.scheduled = true;
        setTimeout(this.flushLater, this.flushMs).unref();
      }
    });
  }

  /** Writes what is buffered now, synchronously (at exit; also for tests). */
  flushSync(): void {
    if (this.bytes === 0) return;
    const data = this.chunks.join('');
    this.chunks = [];
    this.bytes = 0;
    try {
      this.sink.writeSync(data);
    } catch {
      // the destination is gone: nothing more to do at exit
    }
  }

  /** Flushes and stops listening for the process's exit. */
  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.flushSync();
    LIVE.delete(this);
    done(err);
  }
}

/** A sink over a file, opened for appending. */
function fileSink(path: string) {
  const fd = fs.openSync(path, 'a');
  return {
    write: (data: string, done: (err?: unknown) => void) => fs.write(fd, data, (err) => done(err)),
    writeSync: (data: string) => void fs.writeSync(fd, data),
  };
}

/** A sink over a stream such as process.stdout (its write is synchronous for files and pipes on Linux). */
function streamSink(stream: NodeJS.WritableStream & { fd?: number }) {
  return {
    write: (data: string, done: (err?: unknown) => void) => void stream.write(data, done),
    writeSync: (data: string) =>
      typeof stream.fd === 'number' ? void fs.writeSync(stream.fd, data) : void stream.write(data),
  };
}

/** winston's JSON line, with JSON.stringify: an access log entry is flat (no cycles, no BigInt). */
const jsonLine = winston.format((info) => {
  (info as unknown as Record<symbol, string>)[MESSAGE] = JSON.stringify(info);
  return info;
});

/**
 * A winston logger writing one JSON line per entry to `destination` (a file path, appended
 * to; or a stream; default stdout), the lines of 100 ms written together. The access log's
 * default is `jsonLogger()`; pass `jsonLogger('/var/log/gateway/access.log')` for a file.
 */
export function jsonLogger(
  destination: string | NodeJS.WritableStream = process.stdout,
  options: JsonLoggerOptions = {},
): winston.Logger {
  return bufferedJsonLogger(destination, options).logger;
}

/** {@link jsonLogger}, and its buffer (to flush and let go). */
export function bufferedJsonLogger(
  destination: string | NodeJS.WritableStream,
  options: JsonLoggerOptions,
): { logger: winston.Logger; buffer: LineBuffer } {
  const sink = typeof destination === 'string' ? fileSink(destination) : streamSink(destination);
  const buffer = new LineBuffer(
    sink,
    options.maxBufferBytes ?? 16 * 1024 * 1024,
    options.flushMs ?? 100,
  );
  const transport = new winston.transports.Stream({ stream: buffer });
  const logger = winston.createLogger({
    level: 'info',
    format: jsonLine(),
    transports: [transport],
  });
  OWN.set(logger, { buffer, transport });
  return { logger, buffer };
}

/** The loggers made by {@link jsonLogger}, with their buffer and their one transport. */
const OWN = new WeakMap<object, { buffer: LineBuffer; transport: object }>();

/**
 * The buffer of a logger made by {@link jsonLogger} while it is as it was made (its one
 * transport, `info` enabled), else undefined. The access log writes its lines straight into
 * that buffer: the same JSON line winston would write, without winston's stream pipeline (a
 * logger with a transport added, or a level raised, goes through winston as any other).
 */
export function directBuffer(logger: object): LineBuffer | undefined {
  const own = OWN.get(logger);
  if (own === undefined) return undefined;
  const l = logger as winston.Logger;
  const t = l.transports;
  return t.length === 1 && t[0] === own.transport && l.isLevelEnabled('info')
    ? own.buffer
    : undefined;
}
