"""The keys/sign/verify commands through bridge.cli.main, on files in tmp_path."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from signing_helpers import make_event

from bridge.cli import main


def write_ndjson(path: Path, events: list[Any]) -> Path:
    path.write_bytes(b"".join((e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in events))
    return path


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    """A key pair made by `keys generate` for participant UDMS."""
    assert main(["keys", "generate", "--out", str(tmp_path / "keys"), "--participant", "UDMS"]) == 0
    return tmp_path / "keys"


class TestKeysCommands:
    """keys generate and keys show."""

    @pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
    def test_generate(self, tmp_path: Path, alg: str, capsys: pytest.CaptureFixture[str]) -> None:
        """generate writes a 0600 PKCS#8 key and a public JWKS with mpid, and prints the kid."""
        assert main(["keys", "generate", "--out", str(tmp_path), "--alg", alg, "--participant", "UDMS"]) == 0
        key = tmp_path / "signing.key.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        jwks = orjson.loads((tmp_path / "signing.jwks.json").read_bytes())
        (jwk,) = jwks["keys"]
        assert jwk["alg"] == alg and jwk["mpid"] == "UDMS" and "d" not in jwk
        out = capsys.readouterr().out
        assert f"kid: {jwk['kid']}" in out and "PRIVATE" not in out

    def test_generate_makes_es256_by_default(self, keydir: Path) -> None:
        """Without --alg, a new key is P-256 for ES256 (what every participant's stack verifies, .NET included)."""
        (jwk,) = orjson.loads((keydir / "signing.jwks.json").read_bytes())["keys"]
        assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-256", "ES256")

    def test_generate_refuses_overwrite(self, keydir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Running generate twice into the same place fails with exit 2 and keeps the first key."""
        before = (keydir / "signing.key.pem").read_bytes()
        assert main(["keys", "generate", "--out", str(keydir)]) == 2
        assert (keydir / "signing.key.pem").read_bytes() == before
        assert "already exists" in capsys.readouterr().err

    def test_generate_bad_participant(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An invalid MPID is a usage error."""
        assert main(["keys", "generate", "--out", str(tmp_path), "--participant", "bad"]) == 2
        assert "MPID" in capsys.readouterr().err

    def test_show_key_and_jwks_agree(self, keydir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """show --key and show --jwks print the same kid; no private material is printed."""
        capsys.readouterr()
        assert main(["keys", "show", "--key", str(keydir / "signing.key.pem")]) == 0
        key_out = capsys.readouterr().out
        assert main(["keys", "show", "--jwks", str(keydir / "signing.jwks.json")]) == 0
        jwks_out = capsys.readouterr().out
        kid = orjson.loads((keydir / "signing.jwks.json").read_bytes())["keys"][0]["kid"]
        assert f"kid={kid} alg=ES256" in key_out  # the default algorithm of new keys
        assert f"kid={kid} alg=ES256 participant=UDMS" in jwks_out
        pem_body = (keydir / "signing.key.pem").read_text().splitlines()[1]
        assert pem_body not in key_out + jwks_out and "BEGIN" not in key_out

    def test_show_bad_jwks(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A JWKS with a private key member is reported, exit 2."""
        path = tmp_path / "bad.json"
        path.write_text('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "d": "AAAA"}]}')
        assert main(["keys", "show", "--jwks", str(path)]) == 2
        assert "keys[0]" in capsys.readouterr().err


class TestSignVerifyCommands:
    """sign and verify over NDJSON."""

    def test_sign_then_verify(self, keydir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Signed NDJSON verifies with exit 0 and a summary."""
        events = write_ndjson(tmp_path / "in.ndjson", [make_event(event_id=f"e{i}") for i in range(5)])
        signed = tmp_path / "signed.ndjson"
        assert main(["sign", "--key", str(keydir / "signing.key.pem"), str(events), "-o", str(signed)]) == 0
        lines = signed.read_bytes().splitlines()
        assert len(lines) == 5 and all("signature" in orjson.loads(line) for line in lines)
        capsys.readouterr()
        assert main(["verify", "--trust", str(keydir / "signing.jwks.json"), str(signed)]) == 0
        assert "5 valid, 0 invalid" in capsys.readouterr().out

    def test_verify_names_each_failure(
        self, keydir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """verify exits 1 and prints line number, id and reason for every failing event."""
        events = write_ndjson(tmp_path / "in.ndjson", [make_event(event_id=f"e{i}") for i in range(4)])
        signed = tmp_path / "signed.ndjson"
        assert main(["sign", "--key", str(keydir / "signing.key.pem"), str(events), "-o", str(signed)]) == 0
        lines = [orjson.loads(line) for line in signed.read_bytes().splitlines()]
        lines[1]["data"]["flow"] = "D0011"
        del lines[2]["signature"]
        mixed = write_ndjson(
            tmp_path / "mixed.ndjson", [lines[0], lines[1], lines[2], b"", b"{not json", lines[3]]
        )
        capsys.readouterr()
        assert main(["verify", "--trust", str(keydir / "signing.jwks.json"), str(mixed)]) == 1
        captured = capsys.readouterr()
        assert "line 2: id=e1: bad_signature" in captured.err
        assert "line 3: id=e2: missing_signature" in captured.err
        assert "line 5: id=-: malformed" in captured.err
        assert not any(l.startswith(("line 1:", "line 6:")) for l in captured.err.splitlines())
        assert "5 event(s): 2 valid, 3 invalid" in captured.out

    def test_sign_failure_leaves_no_output_file(
        self, keydir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unsignable event (float) fails the run with exit 1, names the line, and writes no output file."""
        bad = make_event(event_id="bad")
        bad["data"]["x"] = 1.5
        events = write_ndjson(tmp_path / "in.ndjson", [make_event(), bad])
        out = tmp_path / "out.ndjson"
        assert main(["sign", "--key", str(keydir / "signing.key.pem"), str(events), "-o", str(out)]) == 1
        assert "line 2: id=bad: unsupported_value" in capsys.readouterr().err
        assert not out.exists() and list(tmp_path.glob(".out*")) == []

    def test_sign_participant_check(
        self, keydir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--participant refuses events from another source."""
        events = write_ndjson(tmp_path / "in.ndjson", [make_event(source="urn:mpid:OTHR")])
        args = [
            "sign",
            "--key",
            str(keydir / "signing.key.pem"),
            "--participant",
            "UDMS",
            str(events),
            "-o",
            str(tmp_path / "o"),
        ]
        assert main(args) == 1
        assert "wrong_participant" in capsys.readouterr().err

    def test_sign_refuses_loose_key(
        self, keydir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A key file readable by others is a configuration error (exit 2) before anything is signed."""
        key = keydir / "signing.key.pem"
        key.chmod(0o644)
        events = write_ndjson(tmp_path / "in.ndjson", [make_event()])
        assert main(["sign", "--key", str(key), str(events)]) == 2
        err = capsys.readouterr().err
        assert "group or others" in err and "Traceback" not in err

    def test_sign_stdout_and_stdin(
        self,
        keydir: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capfdbinary: pytest.CaptureFixture[bytes],
    ) -> None:
        """With '-' sign reads stdin and writes stdout."""
        import io
        import sys

        data = orjson.dumps(make_event()) + b"\n"
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        out = io.BytesIO()
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
        assert main(["sign", "--key", str(keydir / "signing.key.pem"), "-"]) == 0
        assert "signature" in orjson.loads(out.getvalue().splitlines()[0])

    def test_verify_bad_trust_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An unreadable trust file is a configuration error: exit 2, one line, no traceback."""
        events = write_ndjson(tmp_path / "in.ndjson", [make_event()])
        assert main(["verify", "--trust", str(tmp_path / "missing.json"), str(events)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err

    def test_verify_streams(self, keydir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """verify handles many lines without holding them (smoke test for streaming: 2,000 events)."""
        events = write_ndjson(tmp_path / "in.ndjson", [make_event(event_id=str(i)) for i in range(2000)])
        signed = tmp_path / "signed.ndjson"
        assert main(["sign", "--key", str(keydir / "signing.key.pem"), str(events), "-o", str(signed)]) == 0
        capsys.readouterr()
        assert main(["verify", "--trust", str(keydir / "signing.jwks.json"), str(signed)]) == 0
        assert "2000 valid" in capsys.readouterr().out


class TestMixedAlgorithms:
    """A rotation from an EdDSA key to an ES256 one (or back) through the command line: one trust file with both."""

    def test_one_trust_file_verifies_both_and_removing_a_key_refuses_its_events(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        old, new = tmp_path / "old", tmp_path / "new"
        assert main(["keys", "generate", "--out", str(old), "--alg", "EdDSA", "--participant", "UDMS"]) == 0
        assert main(["keys", "generate", "--out", str(new), "--participant", "UDMS"]) == 0
        old_jwk = orjson.loads((old / "signing.jwks.json").read_bytes())["keys"][0]
        new_jwk = orjson.loads((new / "signing.jwks.json").read_bytes())["keys"][0]
        assert (old_jwk["alg"], new_jwk["alg"]) == ("EdDSA", "ES256")
        both = tmp_path / "trust.jwks.json"
        both.write_bytes(orjson.dumps({"keys": [old_jwk, new_jwk]}))
        signed = []
        for name, folder in (("old", old), ("new", new)):
            events = write_ndjson(tmp_path / f"{name}.ndjson", [make_event(event_id=f"{name}{i}") for i in range(3)])
            out = tmp_path / f"{name}.signed.ndjson"
            assert main(["sign", "--key", str(folder / "signing.key.pem"), str(events), "-o", str(out)]) == 0
            signed.append(out.read_bytes())
        stream = write_ndjson(tmp_path / "all.ndjson", [line for text in signed for line in text.splitlines()])
        capsys.readouterr()
        assert main(["keys", "show", "--jwks", str(both)]) == 0
        shown = capsys.readouterr().out
        assert f"kid={old_jwk['kid']} alg=EdDSA participant=UDMS" in shown
        assert f"kid={new_jwk['kid']} alg=ES256 participant=UDMS" in shown
        assert main(["verify", "--trust", str(both), str(stream)]) == 0
        assert "6 event(s): 6 valid, 0 invalid" in capsys.readouterr().out
        # the rotation is over: the old key leaves the trust file, and its events are refused by name
        assert main(["verify", "--trust", str(new / "signing.jwks.json"), str(stream)]) == 1
        captured = capsys.readouterr()
        assert [line.split(": ")[1:3] for line in captured.err.splitlines()] == [[f"id=old{i}", "unknown_key"]
                                                                                   for i in range(3)]
        assert "6 event(s): 3 valid, 3 invalid" in captured.out
