import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { listen, type Running } from './servers';

/** A raw TCP upstream: `onConnection` writes whatever bytes it likes. */
export function rawUpstream(onConnection: (socket: net.Socket) => void): Promise<Running> {
  return listen(
    net.createServer((socket) => {
      socket.on('error', () => {}); // the tests write and cut off as they like
      onConnection(socket);
    }),
  );
}

/** A port on which nothing listens (a server started and stopped). */
export async function deadPort(): Promise<number> {
  const r = await listen(() => {});
  await r.close();
  return r.port;
}

/** A listener whose connections never complete (backlog full): for connect timeouts. */
export async function blackHole(): Promise<{ url: string; close(): Promise<void> }> {
  const child = spawn('python3', [path.join(__dirname, '..', 'fixtures', 'no-accept.py')], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  // Fill the backlog so the next connection attempt hangs.
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 4; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  await Promise.all(fillers.slice(0, 1).map((s) => new Promise((r) => s.once('connect', r))));
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of fillers) s.destroy();
      child.stdin.end();
      await new Promise((r) => child.once('exit', r));
    },
  };
}
