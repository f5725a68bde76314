#!/usr/bin/env bash
# Proves the packed packages install and work in a fresh Express 5 app outside the repo:
#   build -> npm pack every package -> npm install the tarballs into a new project ->
#   run an ESM and a CJS smoke test through the gateway -> type-check .mts and .cts consumers.
# Usage: npm run pack:check    (KEEP_TMP=1 keeps the temp dirs for inspection;
#        EXPRESS=4 checks against Express 4 instead of 5)
set -euo pipefail
EXPRESS="${EXPRESS:-5}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGES=(core balancer breaker limiter auth metrics router gateway)

PACK_DIR="$(mktemp -d -t turnpike-pack.XXXXXX)"
APP_DIR="$(mktemp -d -t turnpike-app.XXXXXX)"
STEP="setup"

finish() {
  local rc=$?
  if [[ $rc -eq 0 ]]; then
    echo
    echo "pack-check: PASS (${#PACKAGES[@]} tarballs installed into a fresh Express ${EXPRESS} app; ESM, CJS and types OK)"
  else
    echo
    echo "pack-check: FAIL at step: ${STEP} (exit ${rc})" >&2
  fi
  if [[ "${KEEP_TMP:-0}" == "1" ]]; then
    echo "pack-check: kept ${PACK_DIR} and ${APP_DIR}"
  else
    rm -rf "${PACK_DIR}" "${APP_DIR}"
  fi
  exit "$rc"
}
trap finish EXIT

step() {
  STEP="$1"
  echo
  echo "==> ${STEP}"
}

case "${APP_DIR}/" in
  "${REPO}/"*)
    echo "pack-check: the temp dir ${APP_DIR} is inside the repo; set TMPDIR elsewhere" >&2
    exit 1
    ;;
esac

step "build (npm run build)"
(cd "${REPO}" && npm run build)

step "npm pack the packages into ${PACK_DIR}"
TARBALLS=()
for p in "${PACKAGES[@]}"; do
  name="$(cd "${REPO}/packages/${p}" && npm pack --pack-destination "${PACK_DIR}" --silent | tail -n 1)"
  tarball="${PACK_DIR}/${name}"
  [[ -f "${tarball}" ]] || {
    echo "npm pack of packages/${p} did not produce ${tarball}" >&2
    exit 1
  }
  # The exports map points at these four files: they must be in the tarball.
  contents="$(tar -tzf "${tarball}")"
  for f in dist/index.js dist/index.mjs dist/index.d.ts dist/index.d.mts package.json; do
    grep -qx "package/${f}" <<<"${contents}" || {
      echo "${name} is missing ${f}" >&2
      exit 1
    }
  done
  echo "${name}: $(wc -l <<<"${contents}") files"
  TARBALLS+=("${tarball}")
done

step "fresh project in ${APP_DIR}: npm init + npm install"
cd "${APP_DIR}"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error \
  express@"${EXPRESS}" "${TARBALLS[@]}" typescript@5.9.3 @types/express@"${EXPRESS}" @types/node@20

# Every @turnpike package must be the packed one, once, at the top level (no registry copy,
# no nested duplicate).
for p in "${PACKAGES[@]}"; do
  [[ -f "node_modules/@turnpike/${p}/package.json" ]] || {
    echo "@turnpike/${p} is not installed at the top level" >&2
    exit 1
  }
done
dupes="$(find node_modules -path 'node_modules/*node_modules/@turnpike/*' -name package.json 2>/dev/null || true)"
[[ -z "${dupes}" ]] || {
  echo "nested @turnpike copies (a dependency was not satisfied by the tarballs):" >&2
  echo "${dupes}" >&2
  exit 1
}
npm ls --all >/dev/null || {
  npm ls --all >&2 || true
  echo "npm ls reports a problem in the installed tree" >&2
  exit 1
}

# The same smoke test, as ESM and as CJS: a tiny upstream, a host Express app with the
# gateway at /api and one route, one request through it, then everything closed.
smoke_body() {
  cat <<'EOF'
const seen = [];
const upstream = http.createServer((req, res) => {
  seen.push(req.url);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ from: 'upstream', url: req.url }));
});
await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
const upstreamUrl = `http://127.0.0.1:${upstream.address().port}`;

const gateway = createGateway({
  services: { svc: { targets: [upstreamUrl] } },
  routes: [{ path: '/hello/:name', service: 'svc' }],
  rateLimit: { limit: 5, windowMs: 60000 },
});
const app = express();
app.use('/api', gateway);
const host = http.createServer(app);
await new Promise((resolve) => host.listen(0, '127.0.0.1', resolve));

let failure;
try {
  const res = await fetch(`http://127.0.0.1:${host.address().port}/api/hello/world`);
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const limit = res.headers.get('ratelimit');
  if (res.status !== 200 || !body || body.from !== 'upstream' || seen.length !== 1) {
    failure = `expected 200 from the upstream, got ${res.status} ${text} (upstream saw ${JSON.stringify(seen)})`;
  } else if (limit !== '"5-in-1min"; r=4; t=60') {
    failure = `expected the rate limit's RateLimit header, got ${limit}`;
  } else {
    console.log(`${FLAVOUR}: GET /api/hello/world -> ${res.status}, upstream saw ${seen[0]}; RateLimit: ${limit}`);
  }
} catch (err) {
  failure = `request failed: ${err && err.stack ? err.stack : err}`;
}

await gateway.close();
host.closeAllConnections();
upstream.closeAllConnections();
await new Promise((resolve) => host.close(resolve));
await new Promise((resolve) => upstream.close(resolve));
if (failure) {
  console.error(`${FLAVOUR}: FAIL: ${failure}`);
  process.exit(1);
}
// Everything is closed: the process must now exit on its own.
setTimeout(() => {
  console.error(`${FLAVOUR}: FAIL: still running 10 s after close(); something keeps the event loop alive`);
  process.exit(1);
}, 10000).unref();
EOF
}

{
  cat <<'EOF'
import http from 'node:http';
import express from 'express';
import { createGateway } from '@turnpike/gateway';
const FLAVOUR = 'esm';
EOF
  smoke_body
} >esm.mjs

{
  cat <<'EOF'
'use strict';
const http = require('node:http');
const express = require('express');
const { createGateway } = require('@turnpike/gateway');
const FLAVOUR = 'cjs';
(async () => {
EOF
  smoke_body
  cat <<'EOF'
})().catch((err) => {
  console.error(`${FLAVOUR}: FAIL:`, err);
  process.exit(1);
});
EOF
} >cjs.cjs

step "ESM smoke test (node esm.mjs)"
timeout 60 node esm.mjs

step "CJS smoke test (node cjs.cjs)"
timeout 60 node cjs.cjs

step "types: tsc --noEmit, module nodenext, .mts (ESM) and .cts (CJS)"
types_body() {
  cat <<'EOF'
import express from 'express';
import { createGateway, type Gateway, type GatewayConfig } from '@turnpike/gateway';

const config: GatewayConfig = {
  services: { svc: { targets: ['http://127.0.0.1:3001'] } },
  routes: [{ path: '/hello/:name', service: 'svc', methods: ['GET'] }],
};
const gateway: Gateway = createGateway(config);
const app = express();
app.use('/api', gateway);
const closing: Promise<void> = gateway.close();
export { app, closing };
EOF
}
types_body >types.mts
types_body >types.cts
cat >tsconfig.json <<'EOF'
{
  "compilerOptions": {
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "target": "es2022",
    "strict": true,
    "noEmit": true,
    "skipLibCheck": false,
    "types": ["node"]
  },
  "files": ["types.mts", "types.cts"]
}
EOF
npx --no-install tsc --noEmit -p tsconfig.json
echo "tsc: types.mts and types.cts OK"
