#!/usr/bin/env bash
# `npm run demo`: installs what is missing (npm packages, redis-server), builds, then starts a local
# cluster and runs the real vmctl against it (tools/local-cluster/src/demo.ts). Options:
#   --agents N   node agents to start (default 3)
#   --keep       keep the cluster (and its web console) running after the demo, until Ctrl-C
#   --http-port H  the web console's port (default 8080 when free, else any free port)
#   --supervise  restart any process of the cluster that dies (as `npm run cluster -- --supervise`)
#   --verbose    echo every log line of the controller and agents
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/ensure.sh
exec node tools/local-cluster/dist/demo.js "$@"
