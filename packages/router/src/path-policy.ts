/**
 * The path policy: what the router refuses before matching, so that the path that was
 * checked is exactly the path that is forwarded. Refused: dot segments (`.`, `..`, also
 * percent-encoded), empty segments (`//`), encoded slash or backslash (`%2f`, `%5c`), a raw
 * backslash, `;` parameters, a raw `#`, NUL and other control characters (raw or encoded), raw non-ASCII,
 * and invalid percent-encoding (bad hex or invalid UTF-8).
 *
 * Accepted paths are normalised (RFC 3986 §6.2.2): percent-encoded unreserved characters are
 * decoded and other escapes upper-cased, so `/%61dmin` and `/admin` match the same route and
 * forward the same bytes.
 */

function hex(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function isUnreserved(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) ||
    (b >= 0x61 && b <= 0x7a) ||
    (b >= 0x30 && b <= 0x39) ||
    b === 0x2d ||
    b === 0x2e ||
    b === 0x5f ||
    b === 0x7e
  );
}

/** The normalised path, or undefined when the policy refuses it. `path` excludes the query. */
export function checkPath(path: string): string | undefined {
  const len = path.length;
  if (len === 0 || path.charCodeAt(0) !== 47) return undefined;
  let segLen = 0;
  let dots = 0;
  let escapes = false;
  let nonAscii = false;
  for (let i = 1; i <= len; i++) {
    let c = i === len ? 47 : path.charCodeAt(i);
    if (c === 47) {
      // End of a segment. An empty one is allowed only as a single trailing slash.
      if (segLen === 0 && i !== len) return undefined;
      if (dots === segLen && (segLen === 1 || segLen === 2)) return undefined;
      segLen = 0;
      dots = 0;
      continue;
    }
    if (c === 37) {
      const hi = i + 2 < len ? hex(path.charCodeAt(i + 1)) : -1;
      const lo = hi < 0 ? -1 : hex(path.charCodeAt(i + 2));
      if (lo < 0) return undefined;
      c = hi * 16 + lo;
      i += 2;
      escapes = true;
      if (c === 0x2f || c === 0x5c || c < 0x20 || c === 0x7f) return undefined;
      if (c >= 0x80) nonAscii = true;
    } else if (c <= 0x20 || c >= 0x7f || c === 0x5c || c === 0x3b || c === 0x23) {
      // A raw "#" starts a fragment for every URL parser upstream: "/admin#x" is "/admin".
      return undefined;
    }
    if (c === 0x2e) dots++;
    segLen++;
  }
  if (!escapes) return path;
  if (nonAscii) {
    try {
      decodeURIComponent(path);
    } catch {
      return undefined;
    }
  }
  return normalise(path);
}

function normalise(path: string): string {
  let out = '';
  let from = 0;
  for (let i = path.indexOf('%'); i !== -1; i = path.indexOf('%', i + 3)) {
    const b = hex(path.charCodeAt(i + 1)) * 16 + hex(path.charCodeAt(i + 2));
    out +=
      path.slice(from, i) +
      (isUnreserved(b) ? String.fromCharCode(b) : path.slice(i, i + 3).toUpperCase());
    from = i + 3;
  }
  return out + path.slice(from);
}
