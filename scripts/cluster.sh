#!/usr/bin/env bash
# `npm run cluster -- --agents N --port P [--token T] [--node-memory-mib M] [--node-vcpus C]`:
# a whole cluster on loopback in the foreground (docs/api.md, "A local cluster for clients and tests"). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/ensure.sh
exec node tools/local-cluster/dist/main.js "$@"
