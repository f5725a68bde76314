// The Express 4 pass of the jest suite: the root jest.config.js, with `express` (and its
// subpaths) mapped to the express@4 that scripts/test-express4.sh installed outside the repo.
// Nothing else is redirected: express 4's own dependencies resolve beside it, everything else
// from the repo's node_modules as usual. Child processes that tests spawn get the same mapping
// from ./resolve-hook.js (via NODE_OPTIONS). Run it with `npm run test:express4`.
'use strict';
const path = require('node:path');
const base = require('../../jest.config.js');

const prefix = process.env.TURNPIKE_EXPRESS4_PREFIX;
if (!prefix) {
  throw new Error(
    'TURNPIKE_EXPRESS4_PREFIX is not set: run this pass with `npm run test:express4`',
  );
}
const expressDir = path.join(prefix, 'node_modules', 'express');

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  rootDir: path.resolve(__dirname, '..', '..'),
  moduleNameMapper: {
    ...base.moduleNameMapper,
    '^express$': require.resolve(expressDir),
    '^express/(.*)$': `${expressDir}/$1`,
  },
};
