import { isIP } from 'node:net';

/**
 * Whether a URL may be fetched for keys or introspection: https, or http to a loopback host
 * (for tests): `localhost`, `[::1]` or an IPv4 address in 127/8, never a name that merely
 * starts like one (`127.evil.example`). No userinfo: a password would end up in logs.
 */
export function secureUrl(value: unknown): URL | undefined {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    return undefined;
  }
  if (url.username !== '' || url.password !== '') return undefined;
  if (url.protocol === 'https:') return url;
  const host = url.hostname;
  const loopback =
    host === 'localhost' || host === '[::1]' || (isIP(host) === 4 && host.startsWith('127.'));
  return url.protocol === 'http:' && loopback ? url : undefined;
}
