import type { Server } from 'node:http';
import { isConfigError, type ConfigError } from '@turnpike/core';

/** The ConfigError `check` throws; fails the test when it throws something else or nothing. */
export function configErrorOf(check: () => unknown): ConfigError {
  try {
    check();
  } catch (err) {
    expect(isConfigError(err)).toBe(true);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

/**
 * A list to push servers onto; each is closed, with its connections, after every test of the
 * file that calls this.
 */
export function closedAfterEach(): Server[] {
  const servers: Server[] = [];
  afterEach(async () => {
    await Promise.all(
      servers.splice(0).map(
        (server) =>
          new Promise<void>((resolve) => {
            server.closeAllConnections();
            server.close(() => resolve());
          }),
      ),
    );
  });
  return servers;
}
