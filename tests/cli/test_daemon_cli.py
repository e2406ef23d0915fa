"""The daemon's commands: check-config, status, and run's refusals at start."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from bridge.cli import main
from bridge.config import load_config
from bridge.service import DEV_JWKS_NAME, DEV_KEY_NAME, Daemon
from bridge.signing import Signer
from bridge.signing.keys import write_private_key
from tests.conftest import REPO
from tests.e2e.conftest import write_config


class TestCheckConfig:
    def test_example_config_is_valid(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The shipped example configuration validates and names what it resolved."""
        assert main(["check-config", "--config", str(REPO / "config" / "bridge.example.yaml")]) == 0
        out = capsys.readouterr().out
        assert "valid" in out and "amqp://guest:***@127.0.0.1:5672/" in out and "207 definitions" in out

    def test_example_config_copied_out_of_the_checkout(self, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
        """An operator copies the example to /etc/dtn-bridge/bridge.yaml: with nothing of the checkout beside it,
        it validates on the definitions shipped in the package, and resolves nothing into the checkout."""
        etc = tmp_path / "etc" / "dtn-bridge"
        etc.mkdir(parents=True)
        shutil.copy(REPO / "config" / "bridge.example.yaml", etc / "bridge.yaml")
        assert main(["check-config", "--config", str(etc / "bridge.yaml")]) == 0
        out = capsys.readouterr().out
        assert "207 definitions (shipped)" in out and str(REPO) not in out

    def test_own_definitions_are_counted(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """flows.definitions adds folders over the shipped definitions; check-config says how many come from them."""
        own = tmp_path / "flows"
        own.mkdir()
        shutil.copy(REPO / "flow_definitions" / "D0010002.yaml", own)
        config = installed(tmp_path, flows={"definitions": [str(own)]})
        assert main(["check-config", "--config", str(config)]) == 0
        assert f"207 definitions (shipped, 1 from {own})" in capsys.readouterr().out

    def test_bad_key_is_named(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A misspelt key is reported with its dotted path, exit 2."""
        path = tmp_path / "bridge.yaml"
        path.write_text("broker:\n  hearbeat: 5\n")
        assert main(["check-config", "--config", str(path)]) == 2
        assert "broker.hearbeat: unknown key" in capsys.readouterr().err


def installed(tmp_path: Path, **overrides: Any) -> Path:
    """A configuration whose signing key (mode 0600) and trust file exist, with `overrides` per section."""
    (tmp_path / "keys").mkdir(exist_ok=True)
    signer = Signer.generate()
    write_private_key(tmp_path / "keys" / "bridge.key.pem", signer.private_key)
    (tmp_path / "keys" / "bridge.jwks.json").write_text(json.dumps(signer.public_jwks()))
    return write_config(tmp_path, ".unused", **overrides)


def make_key_readable(tmp_path: Path) -> None:
    (tmp_path / "keys" / "bridge.key.pem").chmod(0o644)


def make_trust_not_json(tmp_path: Path) -> None:
    (tmp_path / "keys" / "bridge.jwks.json").write_text("{not json")


def leave_as_is(tmp_path: Path) -> None:
    """The configuration alone is wrong."""


# Configurations `run` refuses at start that check-config used to call valid (issue 14), and what the one line
# says: the key at fault.
SSL_OPTIONS_URL = "amqps://guest:guest@127.0.0.1:5671/?ssl_options={'ca_certs':'/etc/ca.pem'}"
REFUSED_AT_START = [
    pytest.param({"rules": {"adressee": {"enforce": False}}}, leave_as_is, "rules.adressee:", id="unknown-rules-key"),
    pytest.param({}, make_key_readable, "signing.key:", id="signing-key-mode-0644"),
    pytest.param({}, make_trust_not_json, "signing.trust:", id="trust-file-not-json"),
    pytest.param({"spool": {"encryption_key": "keys/missing.key"}}, leave_as_is, "spool.encryption_key:",
                 id="missing-encryption-key"),
    pytest.param({"broker": {"urls": [SSL_OPTIONS_URL]}}, leave_as_is,
                 "broker.urls[0]: the URL parameter ssl_options is not accepted", id="ssl-options-in-url"),
    pytest.param({"broker": {"urls": ["amqp://guest:guest@127.0.0.1:notaport/"]}}, leave_as_is, "broker.urls[0]:",
                 id="url-pika-cannot-read"),
    pytest.param({"broker": {"tls": {"ca_file": "keys/missing-ca.pem"}}}, leave_as_is, "broker.tls.ca_file:",
                 id="missing-tls-ca-file"),
    pytest.param({"broker": {"heartbeat": -1}}, leave_as_is, "broker.heartbeat:", id="heartbeat-negative"),
    pytest.param({"broker": {"outbound_delivery_limit": 0}}, leave_as_is, "broker.outbound_delivery_limit:",
                 id="delivery-limit-0"),
]


class TestCheckConfigRunsTheStartChecks:
    @pytest.mark.parametrize(("overrides", "damage", "said"), REFUSED_AT_START)
    def test_check_config_refuses_what_run_refuses(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   overrides: dict[str, Any], damage: Callable[[Path], None],
                                                   said: str) -> None:
        """check-config and run both exit 2 with one line naming the key (and no secret)."""
        config = installed(tmp_path, **overrides)
        damage(tmp_path)
        assert main(["check-config", "--config", str(config)]) == 2
        checked = capsys.readouterr()
        assert said in checked.err and "valid" not in checked.out and "Traceback" not in checked.err
        assert main(["run", "--config", str(config)]) == 2
        assert said in capsys.readouterr().err

    def test_check_config_prints_deprecated_keys(self, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
        """A configuration with the old worker keys is valid, and check-config says what to write instead."""
        config = installed(tmp_path, inbound={"worker_process": False}, outbound={"verify_workers": 1})
        assert main(["check-config", "--config", str(config)]) == 0
        err = capsys.readouterr().err
        assert "WARNING" in err and "inbound.worker_process: deprecated, write inbound.workers" in err
        assert "outbound.verify_workers: deprecated, write outbound.workers" in err

    def test_the_daemon_logs_deprecated_keys_once_at_load(self, tmp_path: Path) -> None:
        """Starting on old worker keys logs one warning per deprecated key group, and runs with the workers meant."""
        config = load_config(installed(tmp_path, signing={"key": None, "trust": "keys/bridge.jwks.json"},
                                       inbound={"worker_process": False}))
        with structlog.testing.capture_logs() as logs:
            service = Daemon(config)
            service.close()
        deprecated = [entry for entry in logs if entry["event"] == "config_deprecated"]
        assert len(deprecated) == 1 and "inbound.worker_process" in deprecated[0]["detail"]
        assert config.inbound.workers == 0

    def test_check_config_creates_nothing(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A valid configuration: check-config makes no folder and no development key, and says what it loaded."""
        config = installed(tmp_path, signing={"key": None, "trust": "keys/bridge.jwks.json"})
        assert main(["check-config", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "valid" in out and "(1 keys)" in out and "development key" in out
        assert not (tmp_path / "var").exists()

    def test_fresh_installation_with_a_development_key(self, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
        """The example's layout (no signing.key, trust = the development JWKS): valid before the first start; the
        start makes the folders, the key and its JWKS; valid again after, naming the key."""
        config_path = write_config(tmp_path, ".unused", signing={"key": None, "trust": f"var/state/{DEV_JWKS_NAME}"},
                                   inbound={"workers": 0})
        assert main(["check-config", "--config", str(config_path)]) == 0
        assert not (tmp_path / "var").exists()
        service = Daemon(load_config(config_path))
        service.close()
        kid = json.loads((tmp_path / "var" / "state" / DEV_JWKS_NAME).read_text())["keys"][0]["kid"]
        capsys.readouterr()
        assert main(["check-config", "--config", str(config_path)]) == 0
        assert f"(kid {kid})" in capsys.readouterr().out

    def test_readable_development_key(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A development key made earlier is held to mode 0600 as well."""
        config = installed(tmp_path, signing={"key": None})
        state = load_config(config).state.dir
        state.mkdir(parents=True)
        write_private_key(state / DEV_KEY_NAME, Signer.generate().private_key)
        (state / DEV_KEY_NAME).chmod(0o640)
        assert main(["check-config", "--config", str(config)]) == 2
        assert "signing.key:" in capsys.readouterr().err

    def test_broken_definition_is_named(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The daemon compiles a definition on first use; check-config compiles every one now: exit 2, named."""
        definitions = tmp_path / "definitions"
        definitions.mkdir()
        (definitions / "D0010002.yaml").write_text("flow: D0010\nversion: '002'\nname: x\ngroups: []\n")
        config = installed(tmp_path, flows={"definitions": str(definitions)})
        assert main(["check-config", "--config", str(config)]) == 2
        assert capsys.readouterr().err.strip() == "dtn-bridge: D0010002.yaml: groups: must be a non-empty list"


class TestRunRefuses:
    def test_readable_private_key(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The daemon refuses to start with a signing key that group or others can read."""
        (tmp_path / "keys").mkdir()
        key = tmp_path / "keys" / "bridge.key.pem"
        write_private_key(key, Signer.generate().private_key)
        key.chmod(0o644)
        config = write_config(tmp_path, ".unused")
        assert main(["run", "--config", str(config)]) != 0
        err = capsys.readouterr().err
        assert "bridge.key.pem" in err and "BEGIN" not in err


class TestStatus:
    def test_status_before_first_run(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Status works on a fresh installation and says nothing ran yet."""
        config = write_config(tmp_path, ".unused")
        assert main(["status", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "never started" in out and "ledger:      empty" in out

    def test_status_json(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--json is machine-readable."""
        config = write_config(tmp_path, ".unused")
        assert main(["status", "--config", str(config), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["ledger"] is None

    def test_status_names_an_outbound_interruption(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """What the daemon wrote of its outbound side (a full disk, say) is shown in words."""
        config = write_config(tmp_path, ".unused")
        state = load_config(config).state.dir
        state.mkdir(parents=True, exist_ok=True)
        (state / "status.json").write_text(json.dumps({"state": "running", "pid": 1, "broker_connected": True,
                                                       "outbound_error": "StorageError: No space left on device"}))
        assert main(["status", "--config", str(config)]) == 0
        assert "outbound:    NOT writing: StorageError: No space left on device" in capsys.readouterr().out
