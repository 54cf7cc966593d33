#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs unit and integration tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/ensure.sh
exec npx vitest run "$@"
