# Shared by the test scripts (sourced, not run).

# apt_install PKG...: installs the Debian packages given (none: nothing to do) when running as
# root; otherwise stops with the apt-get command the user has to run.
apt_install() {
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" = 0 ]; then
    echo "== installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing: $* — install them (apt-get install $*) and rerun" >&2
    exit 1
  fi
}
