#!/usr/bin/env bash
# The jest suite once more, on Express 4 (the latest 4.x from the registry): proves Express 4
# mount discovery and body handling, which `npm run test:unit` (Express 5) cannot.
#   npm install express@4 into a temp dir outside the repo (the repo's node_modules is not
#   touched) -> point jest's moduleNameMapper (scripts/express4/jest.config.js) and spawned
#   node children (scripts/express4/resolve-hook.js via NODE_OPTIONS) at it -> check that both
#   really load 4.x (scripts/express4/check.js) -> jest.
# Usage: npm run test:express4   (JEST_JSON=file writes jest's --json results there, as
#        test:unit does; extra arguments go to jest, e.g. npm run test:express4 -- test/bodies)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO}"

PREFIX="$(mktemp -d -t turnpike-express4.XXXXXX)"
trap 'rm -rf "${PREFIX}"' EXIT
case "${PREFIX}/" in
  "${REPO}/"*)
    echo "test-express4: the temp dir ${PREFIX} is inside the repo; set TMPDIR elsewhere" >&2
    exit 1
    ;;
esac

echo "test-express4: npm install express@4 into ${PREFIX}"
npm install --prefix "${PREFIX}" --no-save --no-package-lock --no-audit --no-fund \
  --ignore-scripts --loglevel=error express@4 >/dev/null

export TURNPIKE_EXPRESS4_PREFIX="${PREFIX}"
export NODE_OPTIONS="${NODE_OPTIONS:+${NODE_OPTIONS} }--require \"${REPO}/scripts/express4/resolve-hook.js\""
node scripts/express4/check.js

args=(--config scripts/express4/jest.config.js)
[[ -n "${JEST_JSON:-}" ]] && args+=(--json "--outputFile=${JEST_JSON}")
npx --no-install jest "${args[@]}" "$@"
