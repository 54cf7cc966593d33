#!/usr/bin/env bash
# Installs Debian's chromium when run as root on a machine that lacks it: the web console's browser test
# (test/web-console.test.ts, playwright-core) and `npm run screenshots` drive it headless. Without root or
# apt-get it only says what is missing (the browser test then skips, saying why). Idempotent.
set -euo pipefail
log() { printf '\033[2m[chromium-setup]\033[0m %s\n' "$*" >&2; }
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  log "installing chromium from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2 \
    || { log "apt-get install chromium failed (see above)"; exit 1; }
else
  log "chromium is missing: install it (sudo apt-get install chromium); the browser test skips without it"
  exit 1
fi
