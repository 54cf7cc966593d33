#!/usr/bin/env bash
# `npm run cluster -- --agents N --port P [--token T] [--node-memory-mib M] [--node-vcpus C]`:
# a whole cluster on loopback in the foreground (API.md, last section). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/ensure.sh
exec node tools/local-cluster/dist/main.js "$@"
