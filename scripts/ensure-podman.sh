#!/usr/bin/env bash
# Makes podman run containers on a machine like the ones here (no systemd, no registry access): installs
# Debian's podman, runc, docker-compose (run against podman's API socket: Debian's podman-compose 1.0.3
# cannot run a service with network_mode: host) and debootstrap when they are missing (as root), adds the
# settings podman needs here in a drop-in file of its own, /etc/containers/containers.conf.d/50-vmm.conf
# (no other file is edited; deleting it undoes this):
#   [containers] default_ulimits = []     podman's default raises RLIMIT_NPROC/NOFILE, which this kernel
#                                         refuses inside a container ("error setting rlimit type 7")
#   [engine] cgroup_manager = "cgroupfs"  there is no systemd to hand cgroups to
#            runtime = "runc"             the runtime measured here
# Without root it only says what is missing. Idempotent.
# Usage: bash scripts/ensure-podman.sh   (exit 0 when podman is usable afterwards, 1 otherwise)
set -euo pipefail

log() { printf '\033[2m[podman-setup]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[31m[podman-setup]\033[0m %s\n' "$*" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

declare -A needs=([podman]=podman [runc]=runc [docker-compose]=docker-compose [debootstrap]=debootstrap)
missing=()
for cmd in "${!needs[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("${needs[$cmd]}"); done
root=0; [ "$(id -u)" = "0" ] && root=1

if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "test/compose-podman.test.ts skips without them." "${missing[@]}"
fi

dropin=/etc/containers/containers.conf.d/50-vmm.conf
if [ ! -e "$dropin" ]; then
  if [ "$root" = 1 ]; then
    mkdir -p "$(dirname "$dropin")"
    cat >"$dropin" <<'EOF'
# Written by the vmm repository's scripts/ensure-podman.sh: what podman needs on a machine without
# systemd whose kernel refuses podman's default rlimits in a container. Delete this file to undo.
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
EOF
    log "wrote $dropin (default_ulimits = [], cgroup_manager = cgroupfs, runtime = runc)"
    if [ -f /etc/containers/containers.conf ] && grep -Eq '^\s*(default_ulimits|cgroup_manager|runtime)\s*=' /etc/containers/containers.conf; then
      log "note: /etc/containers/containers.conf sets some of these too; the drop-in takes precedence"
    fi
  else
    log "not root: cannot write $dropin; if containers fail with 'error setting rlimit', add"
    log "  [containers] default_ulimits = []  and  [engine] cgroup_manager = \"cgroupfs\", runtime = \"runc\""
    log "to /etc/containers/containers.conf as root"
  fi
fi
podman info >/dev/null 2>&1 || fail "podman is installed but 'podman info' fails: $(podman info 2>&1 | tail -1)"
