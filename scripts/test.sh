#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, then runs the unit tests and the
# integration tests (real Redis, controller and agent processes). Arguments go to vitest, e.g.
#   npm test -- --project unit        npm test -- --project integration test/vm-lifecycle.test.ts
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/ensure.sh
exec npx vitest run "$@"
