// Preloaded (NODE_OPTIONS=--require) into every node process of the Express 4 pass, so that
// the plain `node` children some tests spawn load the same express@4 as jest's own mapping
// (./jest.config.js) does. Only `express` and `express/...` are redirected.
'use strict';
const path = require('node:path');
const Module = require('node:module');

const prefix = process.env.TURNPIKE_EXPRESS4_PREFIX;
if (prefix) {
  const expressDir = path.join(prefix, 'node_modules', 'express');
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    if (request === 'express' || request.startsWith('express/')) {
      request = path.join(expressDir, request.slice('express'.length));
    }
    return resolve.call(this, request, ...rest);
  };
}
