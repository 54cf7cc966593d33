#!/usr/bin/env bash
# Makes a fresh checkout runnable: npm packages, redis-server (unless REDIS_URL is set), a build.
# Sourced by demo.sh, test.sh and cluster.sh, so each quick-start command installs what it needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\033[2m[setup]\033[0m %s\n' "$*" >&2; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

if [ -z "${REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    log "installing redis-server from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
  else
    echo "redis-server is missing. Install it (sudo apt-get install redis-server) or set REDIS_URL to a Redis server." >&2
    exit 1
  fi
fi

if [ "${SKIP_BUILD:-}" != "1" ]; then
  log "building (proto generation + tsc -b)"
  npm run --silent build >&2
fi
