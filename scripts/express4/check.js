// Sanity check of the Express 4 pass, independent of the tests: `express` as resolved through
// ./jest.config.js's moduleNameMapper (what jest loads) and through ./resolve-hook.js (what a
// spawned `node` child loads, from the repo root where node_modules holds Express 5) must both
// be express 4.x, the same copy. Prints the versions; exits non-zero otherwise.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.resolve(__dirname, '..', '..');
const config = require('./jest.config.js');

// As jest does: the first moduleNameMapper pattern that matches wins, $1... substituted.
function mapped(request) {
  for (const [pattern, target] of Object.entries(config.moduleNameMapper)) {
    const m = new RegExp(pattern).exec(request);
    if (m) {
      return target
        .replace(/\$(\d+)/g, (_, i) => m[Number(i)])
        .replace('<rootDir>', config.rootDir);
    }
  }
  return undefined;
}

const failures = [];
const main = mapped('express');
const pkgFile = mapped('express/package.json');
if (!main || !pkgFile) failures.push('the jest config does not map express and express/*');
const jestVersion = pkgFile ? require(pkgFile).version : 'unmapped';
if (main && path.dirname(require.resolve(main)) !== path.dirname(pkgFile)) {
  failures.push(`express (${main}) and express/package.json (${pkgFile}) are not one copy`);
}

const childVersion = execFileSync(
  process.execPath,
  ['-p', "require('express/package.json').version + ' ' + require.resolve('express')"],
  { cwd: root, encoding: 'utf8' },
).trim();
// Read as a file: a require() here would itself go through the hook.
const repoPkg = path.join(root, 'node_modules', 'express', 'package.json');
const repoVersion = fs.existsSync(repoPkg)
  ? JSON.parse(fs.readFileSync(repoPkg, 'utf8')).version
  : 'none';

console.log(`express as jest resolves it (${pkgFile}): ${jestVersion}`);
console.log(`express in a spawned node child: ${childVersion}`);
console.log(`(the repo's own node_modules holds express ${repoVersion}, not used in this pass)`);

if (!/^4\./.test(jestVersion)) failures.push(`jest would load express ${jestVersion}, not 4.x`);
const [childMajor, childMain] = childVersion.split(' ');
if (!/^4\./.test(childMajor)) failures.push(`a child process would load express ${childMajor}`);
if (main && childMain !== require.resolve(main)) {
  failures.push(
    `jest (${require.resolve(main)}) and children (${childMain}) load different copies`,
  );
}
if (failures.length) {
  for (const f of failures) console.error(`express4 check: FAIL: ${f}`);
  process.exit(1);
}
console.log('express4 check: OK');
