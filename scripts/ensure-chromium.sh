#!/usr/bin/env bash
# Installs Debian's chromium when run as root on a machine that lacks it: the web console's browser test
# (test/web-console.test.ts, playwright-core) and `npm run screenshots` drive it headless. Without root or
# apt-get it only says what is missing (the browser test then skips, saying why). Idempotent.
set -euo pipefail
log() { printf '\033[2m[chromium-setup]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[31m[chromium-setup]\033[0m %s\n' "$*" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
command -v chromium >/dev/null 2>&1 && exit 0
apt_install "the browser test skips without it." chromium
