import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { deadPort } from './upstreams';

/** A RESP reply: a status or bulk string, an integer, null (a nil bulk), or an array of those. */
export type RedisReply = string | number | null | RedisReply[];

/** The RESP encoding of one command. */
function encode(args: readonly string[]): Buffer {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) parts.push(`$${Buffer.byteLength(a)}\r\n${a}\r\n`);
  return Buffer.from(parts.join(''));
}

/** One reply parsed from `buf` at `at`: its value (or error) and where it ends; undefined while incomplete. */
function parse(
  buf: Buffer,
  at = 0,
): { value: RedisReply; error?: string; end: number } | undefined {
  const eol = buf.indexOf('\r\n', at);
  if (eol === -1) return undefined;
  const line = buf.toString('utf8', at + 1, eol);
  switch (String.fromCharCode(buf[at]!)) {
    case '+':
      return { value: line, end: eol + 2 };
    case '-':
      return { value: null, error: line, end: eol + 2 };
    case ':':
      return { value: Number(line), end: eol + 2 };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, end: eol + 2 };
      if (buf.length < eol + 2 + length + 2) return undefined;
      return { value: buf.toString('utf8', eol + 2, eol + 2 + length), end: eol + 2 + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: eol + 2 };
      const items: RedisReply[] = [];
      let end = eol + 2;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, end);
        if (item === undefined) return undefined;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      return { value: null, error: `unexpected reply ${JSON.stringify(line)}`, end: buf.length };
  }
}

/**
 * Sends one command to the Redis on 127.0.0.1:`port` (a fresh connection, closed after) and
 * resolves with its reply. Rejects on an error reply, a refused or cut connection, or when no
 * reply came in `timeoutMs`.
 */
export function redisCommand(
  port: number,
  args: readonly string[],
  timeoutMs = 1000,
): Promise<RedisReply> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    let done = false;
    const finish = (err: Error | undefined, value?: RedisReply): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err !== undefined) reject(err);
      else resolve(value ?? null);
    };
    const timer = setTimeout(
      () => finish(new Error(`redis ${args[0]}: no reply in ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once('connect', () => socket.write(encode(args)));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const reply = parse(received);
      if (reply === undefined) return;
      if (reply.error !== undefined) finish(new Error(`redis ${args[0]}: ${reply.error}`));
      else finish(undefined, reply.value);
    });
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(new Error(`redis ${args[0]}: connection closed`)));
  });
}

/** A redis-server process of a test's own, on a port of its own, that it can kill and start again. */
export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:PORT`. */
  readonly url: string;
  /** The PID of the process running now; undefined while it is stopped. */
  readonly pid: number | undefined;
  /** Kills the process by its PID (SIGKILL by default) and waits until it exited. Stopped: nothing. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port (stopping it first if it runs); resolves once it answers PING. */
  restart(): Promise<void>;
}

/** Every server started and not yet killed, for {@link killRedisServers}. */
const started = new Set<RedisServer>();

/** Kills every redis-server this helper started that still runs (an afterAll safety net). */
export async function killRedisServers(): Promise<void> {
  await Promise.all([...started].map((s) => s.kill()));
}

/** Polls PING until the server answers PONG; rejects when the process exits or after `timeoutMs`. */
async function untilPong(
  port: number,
  child: ChildProcess,
  log: () => string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`redis-server on port ${port} exited before answering PING:\n${log()}`);
    }
    try {
      if ((await redisCommand(port, ['PING'], 500)) === 'PONG') return;
    } catch {
      // Not listening yet (refused), or still loading.
    }
    if (Date.now() > deadline) {
      throw new Error(
        `redis-server on port ${port} did not answer PING in ${timeoutMs} ms:\n${log()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `redis-server` on 127.0.0.1, on a free port below the ephemeral range (nothing else
 * of the test run takes it while the server is down, so it can be started again on it), with
 * no persistence (`--save "" --appendonly no`). Resolves once it answers PING.
 */
export async function startRedisServer(options: { timeoutMs?: number } = {}): Promise<RedisServer> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const port = await deadPort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let output = '';

  const spawnServer = async (): Promise<void> => {
    output = '';
    const c = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        os.tmpdir(),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = c;
    const keep = (d: Buffer): void => {
      output = (output + d.toString('utf8')).slice(-4000);
    };
    c.stdout.on('data', keep);
    c.stderr.on('data', keep);
    exited = new Promise<void>((resolve) => {
      c.once('close', () => resolve());
      c.once('error', (err) => {
        output += `\nspawn failed: ${err.message}`;
        resolve();
      });
    });
    try {
      await untilPong(port, c, () => output, timeoutMs);
    } catch (err) {
      await server.kill();
      throw err;
    }
  };

  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child?.pid;
    },
    async kill(signal = 'SIGKILL') {
      const c = child;
      if (c === undefined) return;
      child = undefined;
      started.delete(server);
      if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
        try {
          process.kill(c.pid, signal);
        } catch {
          // Already gone.
        }
      }
      await exited;
    },
    async restart() {
      await server.kill();
      started.add(server);
      await spawnServer();
    },
  };
  started.add(server);
  await spawnServer();
  return server;
}

/** A `MONITOR` connection to a Redis: every command the server runs, as it prints them. */
export interface RedisMonitor {
  /** The lines so far, e.g. `1733.. [0 127.0.0.1:5555] "evalsha" "…"`; `[0 lua]` for a script's own calls. */
  readonly lines: string[];
  /**
   * Sends `ECHO marker` on a connection of its own and resolves with every line before it once
   * the monitor printed it: all the commands the server ran before this call, and nothing later.
   */
  mark(): Promise<string[]>;
  close(): void;
}

/** Opens a MONITOR on the Redis on 127.0.0.1:`port`; resolves once it is listening. */
export function monitorRedis(port: number, timeoutMs = 2000): Promise<RedisMonitor> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const lines: string[] = [];
    const waiting = new Map<string, () => void>();
    let pending = '';
    let listening = false;
    let marks = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`monitor: no +OK in ${timeoutMs} ms`));
    }, timeoutMs);
    const monitor: RedisMonitor = {
      lines,
      async mark() {
        const marker = `turnpike-mark-${++marks}`;
        const seen = new Promise<void>((r) => waiting.set(marker, r));
        await redisCommand(port, ['ECHO', marker]);
        await seen;
        const at = lines.findIndex((l) => l.includes(`"${marker}"`));
        return lines.splice(0, at + 1).slice(0, at);
      },
      close: () => socket.destroy(),
    };
    socket.once('connect', () => socket.write(encode(['MONITOR'])));
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let eol: number;
      while ((eol = pending.indexOf('\r\n')) !== -1) {
        const line = pending.slice(1, eol);
        pending = pending.slice(eol + 2);
        if (!listening) {
          listening = true;
          clearTimeout(timer);
          resolve(monitor);
          continue;
        }
        lines.push(line);
        for (const [marker, done] of waiting) {
          if (line.includes(`"${marker}"`)) {
            waiting.delete(marker);
            done();
          }
        }
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
