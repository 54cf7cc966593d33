#!/usr/bin/env bash
# `npm run chaos -- [--migrations N] [--seed S] …`: migrations under injected faults on a supervised
# local cluster, checked against the failure semantics (tools/chaos). One JSON summary line on stdout;
# exit code 1 on any violation.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/ensure.sh
exec node tools/chaos/dist/main.js "$@"
