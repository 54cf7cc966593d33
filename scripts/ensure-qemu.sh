#!/usr/bin/env bash
# Installs what the QEMU driver's tests and the guest image build need, from Debian's packages, when run
# as root on a machine that lacks them: qemu-system-x86 (qemu-system-x86_64), busybox-static (the
# initramfs' shell), cpio (packs the initramfs), gcc and libc6-dev (the static workload program).
# Without root or apt-get it only says what is missing. Idempotent: installs nothing that is there.
# Usage: bash scripts/ensure-qemu.sh   (exit 0 when everything is there afterwards, 1 otherwise)
set -euo pipefail

log() { printf '\033[2m[qemu-setup]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[31m[qemu-setup]\033[0m %s\n' "$*" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

# command or file that proves the package is there → Debian package that brings it
declare -A needs=(
  [qemu-system-x86_64]=qemu-system-x86
  [/bin/busybox]=busybox-static
  [cpio]=cpio
  [gcc]=gcc
  [/usr/lib/x86_64-linux-gnu/libc.a]=libc6-dev
)
has() { case "$1" in /*) [ -e "$1" ] ;; *) command -v "$1" >/dev/null 2>&1 ;; esac; }

missing=()
for what in "${!needs[@]}"; do has "$what" || missing+=("${needs[$what]}"); done
# busybox-static must really be static (the dynamic `busybox` package would not run in the initramfs).
if has /bin/busybox && ! dpkg -s busybox-static >/dev/null 2>&1; then missing+=(busybox-static); fi
[ "${#missing[@]}" -eq 0 ] && exit 0

apt_install "QEMU tests are skipped without them." "${missing[@]}"
