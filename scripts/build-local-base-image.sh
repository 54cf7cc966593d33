#!/usr/bin/env bash
# Builds the local base image of the Dockerfile for machines that cannot pull from a registry
# (`podman build --build-arg BASE_IMAGE=localhost/vmm-base:bookworm-node20 ...`): Debian bookworm made
# with debootstrap from the host's Debian mirror, plus
#   - Node.js 20, the host's own: the files of the host's `nodejs` package (dpkg -L nodejs), the same
#     build as on the host. Where the host has no such package but can reach the apt source it came from
#     (NodeSource's, /etc/apt/sources.list.d/nodesource.sources), that source and its keyring are copied
#     into the base and nodejs is installed from it;
#   - Debian's redis-server and redis-tools, so that the podman override (docker-compose.podman.yml) runs
#     Redis from this same image (the compose file's default is redis:7-alpine, which cannot be pulled);
#   - a `node` user with uid 1000, as in the official node images (the Dockerfile runs as it), and /data
#     owned by redis, as in the official redis image.
# Then `tar | podman import`. Idempotent: does nothing when the image exists with this script's VERSION
# (label vmm.base.version; VMM_BASE_REBUILD=1 rebuilds anyway).
# Runs scripts/ensure-podman.sh first (installs podman, debootstrap…, as root). Needs root (debootstrap).
#   VMM_BASE_IMAGE   the image's name (default localhost/vmm-base:bookworm-node20)
#   DEBIAN_MIRROR    default http://deb.debian.org/debian
# Prints the image's name on stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE="${VMM_BASE_IMAGE:-localhost/vmm-base:bookworm-node20}"
# Bumped whenever what this script puts in the image changes: an image with another version is rebuilt.
VERSION=2
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
log() { printf '\033[2m[base-image]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[31m[base-image]\033[0m %s\n' "$*" >&2; exit 1; }

bash scripts/ensure-podman.sh
have="$(podman image inspect --format '{{index .Labels "vmm.base.version"}}' "$IMAGE" 2>/dev/null || true)"
if [ "${VMM_BASE_REBUILD:-0}" != 1 ] && [ "$have" = "$VERSION" ]; then
  log "$IMAGE exists, version $VERSION (VMM_BASE_REBUILD=1 builds it again)"
  echo "$IMAGE"
  exit 0
fi
[ "$(id -u)" = "0" ] || fail "building $IMAGE needs root (debootstrap, chroot); run: sudo bash scripts/build-local-base-image.sh"

work="$(mktemp -d /var/tmp/vmm-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
started=$SECONDS

log "debootstrap --variant=minbase bookworm from $MIRROR (with redis-server)"
debootstrap --variant=minbase --include=ca-certificates,redis-server,redis-tools bookworm "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap failed (log above)"; }

if dpkg-query -W -f='${Status}' nodejs 2>/dev/null | grep -q 'install ok installed' && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
  log "Node.js $(node --version): the files of the host's nodejs package ($(dpkg-query -W -f='${Version}' nodejs))"
  # Files and symlinks only (directories are made by tar as needed); python3, a Depends of the package for
  # node-gyp, is not needed: no dependency of the project builds native code.
  dpkg -L nodejs | while IFS= read -r f; do if [ -f "$f" ] || [ -L "$f" ]; then printf '%s\n' "${f#/}"; fi; done \
    | tar -C / --no-recursion -cf - -T - | tar -C "$rootfs" -xf -
  # npm as the host runs it: its tree may have been updated in place since the package was installed
  # (then some files dpkg lists are gone and others are new).
  rm -rf "$rootfs/usr/lib/node_modules/npm"
  tar -C / -cf - usr/lib/node_modules/npm | tar -C "$rootfs" -xf -
else
  src=""
  for f in /etc/apt/sources.list.d/nodesource.sources /etc/apt/sources.list.d/nodesource.sources.*; do [ -f "$f" ] && { src="$f"; break; }; done
  [ -n "$src" ] || fail "no Node.js >= 20 package on the host and no NodeSource apt source to install it from"
  log "Node.js from the host's apt source $src"
  cp "$src" "$rootfs/etc/apt/sources.list.d/nodesource.sources"
  keyring="$(sed -n 's/^Signed-By: *//p' "$src" | head -1)"
  [ -n "$keyring" ] && mkdir -p "$rootfs$(dirname "$keyring")" && cp "$keyring" "$rootfs$keyring"
  chroot "$rootfs" apt-get update -qq >&2 || fail "apt-get update in the base failed (is $src reachable?)"
  chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs >&2 \
    || fail "apt-get install nodejs in the base failed"
fi
chroot "$rootfs" node --version >/dev/null || fail "node does not run in the base"
chroot "$rootfs" npm --version >/dev/null || fail "npm does not run in the base"

# The host's own trust: certificate authorities added on the host (/usr/local/share/ca-certificates, e.g.
# a proxy's that re-signs registry.npmjs.org here) are added to the base, so that `npm ci` in the build
# reaches the registry as it does on the host. Node reads the system store through NODE_EXTRA_CA_CERTS.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  log "adding the host's local CA certificates: $(cd /usr/local/share/ca-certificates && echo *.crt)"
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi

log "user node (uid 1000), as in the official node images; cleaning apt's caches"
chroot "$rootfs" groupadd --gid 1000 node
chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
# Redis' data directory, owned by the redis user of Debian's package, as in the official redis image (the
# compose file runs Redis as that user; a named volume mounted there takes this owner).
mkdir -p "$rootfs/data"
chroot "$rootfs" chown redis:redis /data
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
# The build's RUN steps resolve the registry with the host's resolver (the build runs on the host network).
: >"$rootfs/etc/resolv.conf"

log "podman import → $IMAGE"
old_id="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
tar -C "$rootfs" -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change "LABEL vmm.base.version=$VERSION" \
  --change 'CMD ["node"]' - "$IMAGE" >/dev/null
podman run --rm --network host "$IMAGE" sh -c 'node --version && redis-server --version' >&2 \
  || fail "$IMAGE was made but does not run node and redis-server"
# A rebuild leaves the previous image untagged: remove it (fails harmlessly while a container uses it).
if [ -n "$old_id" ] && [ "$old_id" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$old_id" >/dev/null 2>&1 || log "the previous $IMAGE ($old_id) is still in use: left in place"
fi
log "$IMAGE built in $((SECONDS - started)) s"
echo "$IMAGE"
