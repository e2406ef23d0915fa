# Sourced by scripts/test: makes sure `systemd-analyze` exists, for tests/systemd/test_unit_file.py (which fails
# without it). Installs Debian's `systemd` package when absent and run as root (it only provides the binaries here:
# nothing is started in a container where systemd is not PID 1).
ensure_systemd_analyze() {
    if command -v systemd-analyze >/dev/null; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian's systemd (for systemd-analyze)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >&2
        command -v systemd-analyze >/dev/null && return 0
    fi
    echo "setup: systemd-analyze is missing (the unit file test needs it); install it with:" >&2
    echo "       sudo apt-get install systemd   (then run this command again)" >&2
    return 1
}
