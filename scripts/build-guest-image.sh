#!/usr/bin/env bash
# Builds the guest image of @vmm/qemu from Debian's packages, into a cache directory (default
# .cache/guest/, git-ignored; VMM_GUEST_IMAGE_DIR overrides it):
#   vmlinuz           Debian's kernel, extracted from the linux-image .deb (`apt-get download`, nothing
#                     is installed on the host)
#   initramfs.cpio.gz busybox-static as /bin/busybox, an /init script, and /bin/vmm-workload: the static
#                     C workload program (libs/qemu/guest/vmm-workload.c, gcc -static)
#   stamp             what the image was built from; an unchanged stamp means nothing to do
# Idempotent: a second run with the same inputs does nothing. Needs gcc, libc6-dev, busybox-static, cpio
# and apt-get (scripts/ensure-qemu.sh installs them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
out=${VMM_GUEST_IMAGE_DIR:-$root/.cache/guest}
src=$root/libs/qemu/guest/vmm-workload.c

log() { printf '\033[2m[guest-image]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[31m[guest-image]\033[0m %s\n' "$*" >&2; exit 1; }

for tool in gcc cpio gzip dpkg-deb apt-get apt-cache sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (bash scripts/ensure-qemu.sh installs what the build needs)"
done
# The initramfs has no libc: its busybox must be busybox-static's (the `busybox` package's is dynamic).
busybox=/bin/busybox
{ dpkg -s busybox-static >/dev/null 2>&1 && [ -x "$busybox" ]; } || fail "busybox-static is missing (apt-get install busybox-static)"

# The kernel package the metapackage points at, e.g. linux-image-6.1.0-57-amd64.
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [ -z "$kernel_pkg" ]; then
  [ "$(id -u)" = "0" ] && DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
fi
[ -n "$kernel_pkg" ] || fail "apt knows no linux-image-amd64 (run apt-get update)"
kernel_ver=$(apt-cache policy "$kernel_pkg" | awk '/Candidate:/ { print $2 }')

stamp="kernel=$kernel_pkg=$kernel_ver busybox=$(sha256sum <"$busybox" | cut -c1-16)"
stamp+=" workload=$(sha256sum <"$src" | cut -c1-16) script=$(sha256sum <"${BASH_SOURCE[0]}" | cut -c1-16)"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initramfs.cpio.gz" ]; then
  log "up to date: $out"
  exit 0
fi

mkdir -p "$out/debs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

deb=$(ls "$out/debs/${kernel_pkg}_"*.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ]; then
  log "downloading $kernel_pkg ($kernel_ver) from Debian's packages"
  # apt-get download writes into the current directory; as root apt's sandbox user cannot, which only warns.
  (cd "$work" && apt-get download -q "$kernel_pkg" >&2) || fail "apt-get download $kernel_pkg failed"
  rm -f "$out/debs/"*.deb
  mv "$work/${kernel_pkg}_"*.deb "$out/debs/"
  deb=$(ls "$out/debs/${kernel_pkg}_"*.deb | head -n 1)
fi

log "extracting vmlinuz from $(basename "$deb")"
mkdir "$work/kernel"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/kernel" --wildcards './boot/vmlinuz-*'
cp "$work/kernel"/boot/vmlinuz-* "$work/vmlinuz"

log "compiling the workload program (gcc -static)"
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,proc,sys,dev}
gcc -static -O2 -Wall -Wextra -Werror -o "$rootfs/bin/vmm-workload" "$src" -lm
cp "$busybox" "$rootfs/bin/busybox"
cat >"$rootfs/init" <<'EOF'
#!/bin/busybox sh
# The guest's init: the workload program's console is the serial port (console=ttyS0).
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec /bin/vmm-workload </dev/console >/dev/console 2>&1
EOF
chmod 755 "$rootfs/init"

log "packing the initramfs"
(cd "$rootfs" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner 0:0 --quiet) | gzip -9 -n >"$work/initramfs.cpio.gz"

# Replace the outputs only when both are complete, so that a failed build leaves the old image usable.
mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
printf '%s\n' "$stamp" >"$out/stamp"
log "built $out (vmlinuz $(du -h "$out/vmlinuz" | cut -f1), initramfs $(du -h "$out/initramfs.cpio.gz" | cut -f1))"
