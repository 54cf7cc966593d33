#!/usr/bin/env bash
# `npm run cluster -- --agents N --port P [--token T] [--node-memory-mib M] [--node-vcpus C] [--supervise] …`:
# a whole cluster on loopback in the foreground (docs/api.md, "A local cluster" and "The local cluster,
# version 2"; `npm run cluster -- --help` lists every option). Ctrl-C or SIGTERM stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/ensure.sh
exec node tools/local-cluster/dist/main.js "$@"
