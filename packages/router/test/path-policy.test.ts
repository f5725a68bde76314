import { checkPath } from '../src/path-policy';

describe('checkPath refuses', () => {
  test.each<[string, string]>([
    // Dot segments, raw.
    ['a lone "." segment', '/.'],
    ['a lone ".." segment', '/..'],
    ['"." in the middle', '/a/./b'],
    ['".." in the middle', '/a/../b'],
    ['".." at the end', '/a/..'],
    ['".." with a trailing slash', '/a/../'],
    ['"." with a trailing slash', '/a/./'],
    // Dot segments, percent-encoded, any case mix.
    ['"%2e"', '/%2e'],
    ['"%2E"', '/%2E'],
    ['"%2e%2e"', '/a/%2e%2e/b'],
    ['"%2E%2E"', '/a/%2E%2E/b'],
    ['"%2E%2e"', '/a/%2E%2e/b'],
    ['"%2e%2E"', '/a/%2e%2E'],
    ['".%2e"', '/a/.%2e/b'],
    ['".%2E"', '/a/.%2E'],
    ['"%2e."', '/a/%2e./b'],
    ['"%2E." at the start', '/%2E./etc/passwd'],
    ['"%2e" in the middle', '/a/%2e/b'],
    // Encoded slash and backslash; raw backslash.
    ['"%2f"', '/a%2fb'],
    ['"%2F"', '/a%2Fb'],
    ['"%2f" making "..%2f"', '/..%2f'],
    ['"%5c"', '/a%5cb'],
    ['"%5C"', '/a%5Cb'],
    ['a raw backslash', '/a\\b'],
    ['a raw backslash as a dot-dot trick', '/a/..\\b'],
    // Parameters.
    ['";" parameters', '/a;b'],
    ['";jsessionid"', '/users;jsessionid=1/x'],
    ['a lone ";"', '/;'],
    // NUL.
    ['a raw NUL', '/a\u0000b'],
    ['"%00"', '/a%00b'],
    // Other control characters, raw and encoded.
    ['a raw LF', '/a\nb'],
    ['a raw CR', '/a\rb'],
    ['a raw tab', '/a\tb'],
    ['a raw 0x1f', '/a\u001fb'],
    ['a raw DEL', '/a\u007fb'],
    ['a raw space', '/a b'],
    ['"%0a"', '/a%0ab'],
    ['"%0A"', '/a%0Ab'],
    ['"%0d"', '/a%0d'],
    ['"%09"', '/a%09b'],
    ['"%1f"', '/a%1fb'],
    ['"%7f"', '/a%7fb'],
    ['"%7F"', '/a%7F'],
    // Invalid percent-encoding.
    ['a lone "%"', '/a%'],
    ['"%" alone in a segment', '/%/b'],
    ['"%4" at the end', '/a%4'],
    ['"%4" before a slash', '/a%4/b'],
    ['"%zz"', '/a%zzb'],
    ['"%g1"', '/a%g1'],
    ['"%1g"', '/a%1g'],
    ['"%%41"', '/a%%41'],
    // Invalid UTF-8.
    ['the overlong "%c0%ae"', '/%c0%ae'],
    ['the overlong "%C0%AE" as a dot-dot trick', '/%C0%AE%C0%AE/etc'],
    ['"%ff"', '/a%ff'],
    ['"%FF"', '/a%FF'],
    ['a lone continuation byte "%80"', '/a%80'],
    ['a truncated sequence "%e2%82"', '/a%e2%82'],
    ['an encoded surrogate "%ed%a0%80"', '/a%ed%a0%80'],
    // Empty segments.
    ['"//" at the start', '//a'],
    ['"//" alone', '//'],
    ['"//" in the middle', '/a//b'],
    ['"//" at the end', '/a//'],
    // Raw non-ASCII.
    ['a raw "é"', '/caf\u00e9'],
    ['a raw CJK character', '/\u4e2d'],
    ['a raw emoji', '/\u{1f600}'],
    ['a raw U+2028', '/a\u2028b'],
    ['a raw U+00A0', '/a\u00a0b'],
    // Not starting with "/".
    ['an empty path', ''],
    ['a relative path', 'a/b'],
    ['"*"', '*'],
    ['an absolute URL', 'http://x/a'],
    ['a leading "%2f"', '%2fa'],
    ['a leading backslash', '\\a'],
  ])('%s (%j)', (_label, path) => {
    expect(checkPath(path)).toBeUndefined();
  });
});

describe('checkPath accepts', () => {
  test.each<[string, string]>([
    ['the root', '/'],
    ['a plain path', '/users/1'],
    ['a trailing slash', '/users/'],
    ['an encoded space "%20"', '/a%20b'],
    ['three dots', '/a/.../b'],
    ['a dot inside a segment', '/a.b/.well-known/x.'],
    ['a sub-delimiter set', "/a-b_c~d!$&'()*+,=:@"],
  ])('%s (%j) unchanged', (_label, path) => {
    expect(checkPath(path)).toBe(path);
  });

  it('accepts an encoded ";" ("%3b"), upper-casing it', () => {
    expect(checkPath('/a%3bb')).toBe('/a%3Bb');
  });

  it('accepts valid UTF-8, upper-casing its escapes', () => {
    expect(checkPath('/caf%c3%a9')).toBe('/caf%C3%A9');
  });

  it('accepts a four-byte UTF-8 sequence', () => {
    expect(checkPath('/%F0%9F%98%80')).toBe('/%F0%9F%98%80');
  });
});

describe('checkPath normalises', () => {
  test.each<[string, string, string]>([
    ['an encoded letter', '/%61dmin', '/admin'],
    ['an encoded upper-case letter', '/%41dmin', '/Admin'],
    ['an encoded digit', '/v%31', '/v1'],
    ['an encoded "-"', '/a%2db', '/a-b'],
    ['an encoded "_"', '/a%5fb', '/a_b'],
    ['an encoded "~"', '/%7euser', '/~user'],
    ['an encoded "." inside a segment', '/a%2eb', '/a.b'],
    ['consecutive encoded letters', '/%61%64%6d%69%6e', '/admin'],
    ['lower-case hex of a reserved character', '/a%3ab', '/a%3Ab'],
    ['mixed-case hex of a non-ASCII byte', '/a%c3%A9', '/a%C3%A9'],
    ['an encoded "%"', '/100%25', '/100%25'],
    ['an encoded "?"', '/a%3fb', '/a%3Fb'],
    ['an encoded "#"', '/a%23b', '/a%23b'],
    ['escapes in several segments', '/%61/%3a/%7E', '/a/%3A/~'],
  ])('%s: %j → %j', (_label, path, normalised) => {
    expect(checkPath(path)).toBe(normalised);
  });

  it('gives the same path for "/%61dmin" and "/admin"', () => {
    expect(checkPath('/%61dmin')).toBe(checkPath('/admin'));
  });

  it('does not decode an encoded "%" into a new escape', () => {
    expect(checkPath('/%2561dmin')).toBe('/%2561dmin');
  });

  test.each(['/%61dmin', '/a%3ab', '/caf%c3%a9', '/a%2eb/%7e'])('is idempotent for %j', (path) => {
    const once = checkPath(path);
    expect(once).toBeDefined();
    expect(checkPath(once!)).toBe(once);
  });
});
