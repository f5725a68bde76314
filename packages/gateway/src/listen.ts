import type { Server } from 'node:http';
import { number, string } from '@turnpike/core';

const portCheck = number({ min: 0, max: 65535, integer: true });
const hostCheck = string({ minLength: 1, expected: 'a host name or address, e.g. "127.0.0.1"' });

/**
 * Starts `server` listening on `port` (and `host`). Resolves once it listens; rejects with
 * the listen error (EADDRINUSE, …), or with a ConfigError naming `listen.port` or
 * `listen.host` for a value that cannot work.
 */
export async function listenOn(server: Server, port: unknown, host: unknown): Promise<void> {
  const options = {
    port: portCheck(port, 'listen.port'),
    host: host === undefined ? undefined : hostCheck(host, 'listen.host'),
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Closes a server and every connection it still has (keep-alive ones too). */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
