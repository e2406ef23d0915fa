"""The daemon's commands: check-config, status, and run's refusals at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import load_config
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

    def test_bad_key_is_named(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A misspelt key is reported with its dotted path, exit 2."""
        path = tmp_path / "bridge.yaml"
        path.write_text("broker:\n  hearbeat: 5\n")
        assert main(["check-config", "--config", str(path)]) == 2
        assert "broker.hearbeat: unknown key" in capsys.readouterr().err


    def test_broken_definition_is_named(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The daemon compiles a definition on first use; check-config compiles every one now: exit 2, named."""
        definitions = tmp_path / "definitions"
        definitions.mkdir()
        (definitions / "D0010002.yaml").write_text("flow: D0010\nversion: '002'\nname: x\ngroups: []\n")
        config = write_config(tmp_path, ".unused", flows={"definitions": str(definitions)})
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
