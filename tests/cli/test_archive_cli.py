"""`dtn-bridge archive cat` and `dtn-bridge archive keygen`, through bridge.cli.main."""

from __future__ import annotations

import json
import secrets
import stat
from datetime import date
from pathlib import Path

import pytest

from bridge.adapters.encryption import FileCipher, generate_key_file
from bridge.adapters.spool import Spool
from bridge.cli import main
from bridge.config import load_config


def write_config(root: Path, **spool: object) -> Path:
    config = {
        "spool": {
            "processing": "var/processing",
            "archive": "var/archive",
            "quarantine": "var/quarantine",
            **spool,
        },
        "watch": {"inbound": "var/inbound"},
    }
    path = root / "bridge.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def archived(root: Path, config_path: Path, data: bytes, name: str = "D0010002.usr") -> Path:
    """Claim and archive `data` through a Spool built like the daemon builds it."""
    config = load_config(config_path)
    cipher = (
        FileCipher.from_key_file(config.spool.encryption_key, config.spool.encryption_keys_old)
        if config.spool.encryption_key
        else None
    )
    for folder in (config.spool.processing, config.watch.inbound):
        folder.mkdir(parents=True, exist_ok=True)
    spool = Spool(config.spool.processing, config.spool.archive, config.spool.quarantine, cipher=cipher)
    (config.watch.inbound / name).write_bytes(data)
    claim = spool.claim(config.watch.inbound / name)
    assert claim is not None
    return spool.archive(claim, date(2024, 5, 6))


class TestKeygen:
    def test_writes_a_0600_key(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        out = tmp_path / "spool.key"
        assert main(["archive", "keygen", "--out", str(out)]) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        key_id = FileCipher.from_key_file(out).key_id
        assert key_id in capsys.readouterr().out

    def test_refuses_to_overwrite(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        out = tmp_path / "spool.key"
        generate_key_file(out)
        before = out.read_bytes()
        assert main(["archive", "keygen", "--out", str(out)]) == 3
        assert "refusing to overwrite" in capsys.readouterr().err
        assert out.read_bytes() == before

    def test_missing_folder(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["archive", "keygen", "--out", str(tmp_path / "no" / "spool.key")]) == 3
        assert "cannot create key file" in capsys.readouterr().err


class TestCat:
    def test_encrypted_archive(self, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
        """An encrypted archived file prints as its plaintext."""
        generate_key_file(tmp_path / "spool.key")
        config = write_config(tmp_path, encryption_key="spool.key")
        data = secrets.token_bytes(200_000) + b"\nEND\n"
        final = archived(tmp_path, config, data)
        assert final.name.endswith(".enc")
        assert main(["archive", "cat", "--config", str(config), str(final)]) == 0
        assert capfdbinary.readouterr().out == data

    def test_encrypted_quarantine_report(
        self, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        generate_key_file(tmp_path / "spool.key")
        config_path = write_config(tmp_path, encryption_key="spool.key")
        config = load_config(config_path)
        config.spool.processing.mkdir(parents=True)
        spool = Spool(
            config.spool.processing,
            config.spool.archive,
            config.spool.quarantine,
            cipher=FileCipher.from_key_file(tmp_path / "spool.key"),
        )
        (tmp_path / "bad.usr").write_bytes(b"bad")
        claim = spool.claim(tmp_path / "bad.usr")
        assert claim is not None
        spool.quarantine(claim, {"reason": "quoted value 'X'"})
        report = config.spool.quarantine / "bad.usr.error.json.enc"
        assert main(["archive", "cat", "--config", str(config_path), str(report)]) == 0
        assert json.loads(capfdbinary.readouterr().out) == {"reason": "quoted value 'X'"}

    def test_plaintext_file_is_printed_as_is(
        self, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """Files archived before encryption was switched on still print, without needing a key."""
        config = write_config(tmp_path)
        final = archived(tmp_path, config, b"ZHV|plain|\n")
        assert main(["archive", "cat", "--config", str(config), str(final)]) == 0
        assert capfdbinary.readouterr().out == b"ZHV|plain|\n"

    def test_old_key_after_rotation(self, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
        """After a rotation the old key, listed in encryption_keys_old, still reads older files."""
        generate_key_file(tmp_path / "old.key")
        old_config = write_config(tmp_path, encryption_key="old.key")
        final = archived(tmp_path, old_config, b"before rotation")
        generate_key_file(tmp_path / "new.key")
        config = write_config(tmp_path, encryption_key="new.key", encryption_keys_old=["old.key"])
        assert main(["archive", "cat", "--config", str(config), str(final)]) == 0
        assert capfdbinary.readouterr().out == b"before rotation"

    def test_wrong_key(self, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
        generate_key_file(tmp_path / "a.key")
        final = archived(tmp_path, write_config(tmp_path, encryption_key="a.key"), b"secret")
        generate_key_file(tmp_path / "b.key")
        config = write_config(tmp_path, encryption_key="b.key")
        assert main(["archive", "cat", "--config", str(config), str(final)]) == 3
        captured = capfd.readouterr()
        assert "wrong key" in captured.err and captured.out == ""

    def test_encrypted_without_key_configured(
        self, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        generate_key_file(tmp_path / "a.key")
        final = archived(tmp_path, write_config(tmp_path, encryption_key="a.key"), b"secret")
        config = write_config(tmp_path)
        assert main(["archive", "cat", "--config", str(config), str(final)]) == 3
        assert "spool.encryption_key is not set" in capfd.readouterr().err

    def test_tampered(self, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
        generate_key_file(tmp_path / "a.key")
        config = write_config(tmp_path, encryption_key="a.key")
        final = archived(tmp_path, config, b"secret data")
        raw = bytearray(final.read_bytes())
        raw[-1] ^= 1
        final.write_bytes(bytes(raw))
        assert main(["archive", "cat", "--config", str(config), str(final)]) == 3
        captured = capfd.readouterr()
        assert "tampered" in captured.err and captured.out == ""

    def test_key_with_open_mode_is_refused(self, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
        generate_key_file(tmp_path / "a.key")
        config = write_config(tmp_path, encryption_key="a.key")
        final = archived(tmp_path, config, b"secret")
        (tmp_path / "a.key").chmod(0o644)
        assert main(["archive", "cat", "--config", str(config), str(final)]) == 3
        assert "chmod 600" in capfd.readouterr().err

    def test_missing_file(self, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
        config = write_config(tmp_path)
        with pytest.raises(SystemExit) as exited:  # a usage error, as for every command's input file
            main(["archive", "cat", "--config", str(config), str(tmp_path / "nope.usr")])
        assert exited.value.code == 2
        assert "nope.usr: no such file" in capfd.readouterr().err

    def test_bad_config(self, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
        config = write_config(tmp_path, encryption_keys_old=["old.key"])
        (tmp_path / "x").write_bytes(b"plain")
        assert main(["archive", "cat", "--config", str(config), str(tmp_path / "x")]) == 2
        assert "spool.encryption_keys_old" in capfd.readouterr().err
