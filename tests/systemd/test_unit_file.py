"""The shipped systemd unit: its directives (start protocol, restarts, hardening), `systemd-analyze verify`.

`systemd-analyze` must be installed (scripts/lib/ensure-systemd-analyze.sh installs Debian's `systemd`
package): this test fails rather than skips without it, so a CI image that lacks it cannot pass by accident.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "dtn-bridge.service"
ENV_EXAMPLE = REPO / "systemd" / "dtn-bridge.env.example"
DAEMON = REPO / ".venv" / "bin" / "dtn-bridge"

Directives = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Directives:
    """section -> key -> every value in order (keys may repeat, e.g. SystemCallFilter=)."""
    sections: Directives = defaultdict(lambda: defaultdict(list))
    section = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line {number}: keep directives on one line"
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        assert "=" in line and section, f"line {number}: not a directive: {raw!r}"
        key, value = line.split("=", 1)
        sections[section][key.strip()].append(value.strip())
    return sections


def single(directives: Directives, section: str, key: str) -> str:
    values = directives[section].get(key)
    assert values is not None, f"[{section}] {key}= is missing"
    assert len(values) == 1, f"[{section}] {key}= appears {len(values)} times"
    return values[0]


@pytest.fixture(scope="module")
def unit() -> Directives:
    return parse_unit(UNIT.read_text())


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is not installed: run scripts/lib/ensure-systemd-analyze.sh (as root) "
                    "or `sudo apt-get install systemd`; the unit file cannot be verified without it")
    return path


def test_start_protocol_and_restarts(unit: Directives) -> None:
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "RestartSec": "5",
        "RestartPreventExitStatus": "2",
        "User": "dtn-bridge",
        "Group": "dtn-bridge",
        "EnvironmentFile": "-/etc/dtn-bridge/dtn-bridge.env",
        "ExecStart": "/opt/dtn-bridge/.venv/bin/dtn-bridge run --config /etc/dtn-bridge/bridge.yaml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "KillSignal": "SIGTERM",
        "KillMode": "mixed",  # the daemon alone gets SIGTERM: it ends its build worker after draining
        "TimeoutStopSec": "45",
        "StateDirectory": "dtn-bridge",
    }
    assert {key: single(unit, "Service", key) for key in expected} == expected
    assert single(unit, "Install", "WantedBy") == "multi-user.target"


def test_documentation_is_where_the_install_puts_it(unit: Directives) -> None:
    """`Documentation=` names files docs/service.md has the operator install (a wheel install has no docs/ of its
    own), and they exist in docs/."""
    installs = [line for line in (REPO / "docs" / "service.md").read_text().splitlines()
                if "install " in line and "-t /usr/share/doc/dtn-bridge " in line]
    assert len(installs) == 1, installs
    for uri in single(unit, "Unit", "Documentation").split():
        assert uri.startswith("file:///usr/share/doc/dtn-bridge/"), uri
        name = uri.rsplit("/", 1)[1]
        assert (REPO / "docs" / name).is_file(), name
        assert f" docs/{name}" in installs[0], name


def test_stop_timeout_outlasts_the_drain(unit: Directives) -> None:
    """systemd must not SIGKILL a daemon still finishing its file: TimeoutStopSec > run_daemon's drain."""
    from bridge.service import run_daemon

    drain = inspect.signature(run_daemon).parameters["drain_timeout"].default
    assert int(single(unit, "Service", "TimeoutStopSec")) > drain


def test_hardening(unit: Directives) -> None:
    expected = {
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/dtn-bridge /srv/dtn",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "PrivateDevices": "yes",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "SystemCallArchitectures": "native",
        "UMask": "0027",
    }
    assert {key: single(unit, "Service", key) for key in expected} == expected
    assert unit["Service"]["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


def test_env_example_is_plain_assignments() -> None:
    """EnvironmentFile= takes KEY=value lines; `export` or shell syntax would be read literally."""
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, _ = line.partition("=")
            assert sep and key.isidentifier() and not key.startswith("export"), line


def verifiable_copy(tmp_path: Path) -> Path:
    """The shipped unit with only ExecStart (the real entry point) and User/Group (root) changed, so that
    `systemd-analyze` can check it on this machine; every other line stays byte-identical."""
    if not DAEMON.exists():
        pytest.fail(f"{DAEMON} is missing: create the venv first (scripts/test does)")
    lines = UNIT.read_text().splitlines(keepends=True)
    replaced = {
        "ExecStart=": f"ExecStart={DAEMON} run --config /etc/dtn-bridge/bridge.yaml\n",
        "User=": "User=root\n",
        "Group=": "Group=root\n",
    }
    out = []
    for line in lines:
        prefix = next((p for p in replaced if line.startswith(p)), None)
        out.append(replaced[prefix] if prefix else line)
    changed = [(a, b) for a, b in zip(lines, out, strict=True) if a != b]
    assert len(changed) == 3, changed
    copy = tmp_path / "dtn-bridge.service"
    copy.write_text("".join(out))
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze(), *args], capture_output=True, text=True, timeout=60, check=False)


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    result = analyze("verify", "--man=no", str(verifiable_copy(tmp_path)))
    output = (result.stdout + result.stderr).strip()
    # verify exits 0 even for unknown keys and bad values (it ignores them with a warning): any output fails
    assert result.returncode == 0 and not output, output


def test_systemd_analyze_verify_catches_mistakes(tmp_path: Path) -> None:
    """The check above would notice a typo: the same tool flags an unknown key in an otherwise same copy."""
    copy = verifiable_copy(tmp_path)
    copy.write_text(copy.read_text().replace("ProtectHome=yes", "ProtectHomes=yes"))
    result = analyze("verify", "--man=no", str(copy))
    assert "ProtectHomes" in result.stdout + result.stderr


def test_security_exposure_is_low(tmp_path: Path) -> None:
    """`systemd-analyze security` scores exposure from 0 (locked down) to 10; keep the unit under 2.5 even
    run as root (the copy); the shipped unit (User=dtn-bridge) scores better still."""
    copy = verifiable_copy(tmp_path)
    result = analyze("security", "--offline=yes", "--no-pager", "--threshold=25", str(copy))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
