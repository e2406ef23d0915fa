# Sourced by scripts/run and scripts/test: makes .venv with the package and its test tools, once per change of
# pyproject.toml or constraints.txt, at the versions of constraints.txt (those the tests last passed with). On a
# fresh Debian machine it installs python3-venv first when it can (as root).
ensure_venv() {
    local stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
    if [ -f "$stamp" ]; then return 0; fi
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "setup: installing python3-venv (Debian)" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >&2
        else
            echo "setup: Python's venv module is missing; install it with: sudo apt-get install python3-venv" >&2
            return 1
        fi
    fi
    echo "setup: creating .venv and installing dtn-bridge (first run only)" >&2
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -c constraints.txt -e '.[test]' >&2
    rm -f .venv/.installed-*
    touch "$stamp"
}
