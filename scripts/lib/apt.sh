# Sourced by the scripts/ensure*.sh scripts, after they define log() and fail() (their own prefixes).
# apt_install HINT PKG...: installs the packages from Debian's archive when run as root with apt-get,
# without recommended packages (none of the tools here needs them: qemu-system-x86 alone would bring a
# GUI stack); otherwise fails saying what to install, then HINT (what goes without them, or another way).
apt_install() {
  local hint=$1
  shift
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $* from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || fail "apt-get update failed (see above)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 \
      || fail "apt-get install $* failed (see above)"
  else
    fail "missing: $*. Install them as root (apt-get install $*)${hint:+; $hint}"
  fi
}
