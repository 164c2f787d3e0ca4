#!/usr/bin/env bash
# Runs the whole test suite (jest) against a real Temporal dev server that the tests start.
# Installs what it needs first (npm dependencies, Temporal CLI). Ends with "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_node_modules
ensure_temporal_cli
ensure_test_server
ensure_python_env
ensure_postgres
cd "$PROMOTE_ROOT"
mkdir -p test-results
set +e
npx --no-install jest --json --outputFile=test-results/jest.json "$@"
code=$?
set -e
node -e '
  const fs = require("fs");
  let r;
  try { r = JSON.parse(fs.readFileSync("test-results/jest.json", "utf8")); } catch { console.log("0 passed, 0 failed"); process.exit(0); }
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests + (r.numRuntimeErrorTestSuites || 0)} failed`);
'
exit $code
