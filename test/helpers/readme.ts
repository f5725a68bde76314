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

/**
 * Runs a README's CommonJS example as written: `require` answers from `modules` only (an
 * example needing anything else fails the test), `globals` are in scope (what the example
 * takes as given, e.g. `app` or a `buildReports()` of the reader's), and its `module.exports`
 * is returned.
 */
export function runExample(
  code: string,
  modules: Record<string, unknown>,
  globals: Record<string, unknown> = {},
): Record<string, unknown> {
  const module = { exports: {} as Record<string, unknown> };
  const requireStub = (name: string): unknown => {
    if (!(name in modules)) throw new Error(`the README example requires ${name}`);
    return modules[name];
  };
  const names = Object.keys(globals);
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const body = new Function('require', 'module', ...names, code) as (...args: unknown[]) => void;
  body(requireStub, module, ...names.map((n) => globals[n]));
  return module.exports;
}
