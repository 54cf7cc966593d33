#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, then runs the unit tests and the
# integration tests (real Redis, controller and agent processes). Arguments go to vitest, e.g.
#   npm test -- --project unit        npm test -- --project integration test/vm-lifecycle.test.ts
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/ensure.sh
# The tests are typechecked first (the build leaves them out; ~15 s): a type error fails fast.
echo "[test] typechecking the tests (tsconfig.tests.json)" >&2
npx tsc -p tsconfig.tests.json || { echo "[test] the tests do not typecheck (see above)" >&2; exit 1; }
exec npx vitest run "$@"
