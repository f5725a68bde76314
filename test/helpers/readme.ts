import { readFileSync } from 'node:fs';

/** A README's ```js examples, for tests that run them as written. */
export interface Readme {
  /** The first ```js block after `heading`. */
  codeAfter: (heading: string) => string;
}

/** Reads a README once. */
export function readReadme(file: string): Readme {
  const readme = readFileSync(file, 'utf8');
  return {
    codeAfter: (heading) => {
      const at = readme.indexOf(heading);
      expect(at).toBeGreaterThanOrEqual(0);
      const match = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
      expect(match).not.toBeNull();
      return match![1]!;
    },
  };
}

/** `code` with each `[from, to]` replaced; every one must be found (the README may not drift). */
export function edited(code: string, replacements: [string, string][]): string {
  for (const [from, to] of replacements) {
    expect(code).toContain(from);
    code = code.replace(from, to);
  }
  return code;
}
