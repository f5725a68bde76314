#!/usr/bin/env bash
# Both jest passes, the second even when the first fails: Express 5 (the repo's node_modules,
# `npm run test:unit`) then Express 4 (`npm run test:express4`). Exits non-zero if either did.
# JEST_JSON=file writes the Express 5 results to file and the Express 4 ones to
# JEST_JSON_EXPRESS4 (default: file.express4), as jest's --json output.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

status=0
echo "=== jest on Express 5 (npm run test:unit)"
npm run test:unit || status=1

json4="${JEST_JSON_EXPRESS4:-${JEST_JSON:+${JEST_JSON}.express4}}"
echo "=== jest on Express 4 (npm run test:express4)"
JEST_JSON="${json4}" npm run test:express4 || status=1

exit "${status}"
