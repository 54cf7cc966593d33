#!/usr/bin/env bash
# `npm run fuzz -- [--seconds S] [--seed N]`: random and boundary input to every method and the data port of a
# local cluster, checked against the failure semantics (tools/fuzz). One JSON summary line on stdout;
# exit code 1 on any violation.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/ensure.sh
exec node tools/fuzz/dist/main.js "$@"
