#!/usr/bin/env bash
# Makes a fresh checkout runnable: Node check, npm packages, redis-server (unless REDIS_URL is set), a build.
# Sourced by demo.sh, test.sh and cluster.sh, so each quick-start command installs what it needs.
# SKIP_BUILD=1 skips the build (when dist/ is known to be fresh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\033[2m[setup]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[31m[setup]\033[0m %s\n' "$*" >&2; exit 1; }
source scripts/lib/apt.sh

command -v node >/dev/null 2>&1 || fail "node is missing: install Node.js 20.19 or newer (https://nodejs.org)."
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || fail "Node $(node --version) is too old: this project needs Node 20.19 or newer."

# Install when node_modules is missing, or older than the lock file (a pull changed dependencies).
# Not `npm ci`: npm 11 writes lock files without other platforms' optional binaries (buf, swc) and then
# refuses them in `npm ci`. `npm install --no-save` installs the lock file's exact pins without rewriting it.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages (the exact versions of package-lock.json)"
  npm install --no-save --no-audit --no-fund --loglevel=error >&2 || fail "npm install failed (see above)"
fi

find_redis() {
  [ -n "${REDIS_SERVER_BIN:-}" ] && [ -x "${REDIS_SERVER_BIN}" ] && return 0
  command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]
}
if [ -z "${REDIS_URL:-}" ] && ! find_redis; then
  # The package may start a system service on 6379; the project starts its own on free ports.
  apt_install "or set REDIS_SERVER_BIN to a redis-server, or REDIS_URL to a Redis server." redis-server
fi

# The controller's malloc (tools/local-cluster/src/allocator.ts): jemalloc gives freed memory back where
# glibc's keeps it. redis-server brings it; without it (REDIS_URL set, no root) the controller runs on glibc.
if ! ls /usr/lib/*-linux-gnu/libjemalloc.so.2 >/dev/null 2>&1; then
  # Optional: a failed install leaves the controller on glibc, it does not stop the quick start.
  (apt_install "" libjemalloc2) || log "libjemalloc2 is not installed: the controller runs with glibc's malloc (apt-get install libjemalloc2 as root to change that)"
fi

if [ "${SKIP_BUILD:-}" != "1" ]; then
  log "building (proto generation + tsc -b)"
  npm run --silent build >&2 || fail "the build failed (see above)"
fi
