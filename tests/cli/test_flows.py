"""The flow engine's commands: exit codes, one clear line per error, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bridge.cli import main
from tests.conftest import EXAMPLES, sample

KRAKEN = "DTC5259515123502080915D0010"


class TestValidate:
    def test_valid_file(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A valid file exits 0 and says what it holds."""
        assert main(["validate", str(sample(KRAKEN))]) == 0
        assert "valid D0010002, 11 flow instances, 35 groups" in capsys.readouterr().out

    def test_defects_listed(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An invalid file exits 1 with one line per defect, prefixed by its path."""
        path = sample("sureserve")
        assert main(["validate", str(path)]) == 1
        errors = capsys.readouterr().err.splitlines()
        assert errors == [f"{path}: D0155001 line 8 group ZPT item 2: Total Group Count is '144' but the file has 6",
                          f"{path}: D0155001 line 8 group ZPT item 4: Flow Count is '48' but the file has 2"]

    def test_check_severity_option(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--check NAME=SEVERITY: under warn a wrong check digit is a warning (exit 0), by default a defect."""
        path = sample("igloo-airflow")
        defect = (f"{path}: D0379001 line 2 group 25B item 1 (mpan_core, NUM(13)): '1234567891234' fails the MPAN "
                  "check digit: its last digit must be 6")
        assert main(["validate", str(path)]) == 1
        assert capsys.readouterr().err.splitlines()[0] == defect
        assert main(["validate", "--check", "mpan_check_digit=warn", str(path)]) == 0
        out, err = capsys.readouterr()
        assert "valid D0379001, 2 flow instances, 100 groups, 2 warnings" in out
        assert err.splitlines()[0] == defect.replace(f"{path}: ", f"{path}: warning: ", 1)
        assert main(["parse", "--check", "mpan_check_digit=off", str(path)]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2

    @pytest.mark.parametrize("option", ["mpan=warn", "mpan_check_digit=loud", "mpan_check_digit"])
    def test_check_option_refused(self, option: str, capsys: pytest.CaptureFixture[str]) -> None:
        """A wrong --check is a usage error (exit 2) saying what is known."""
        with pytest.raises(SystemExit) as exited:
            main(["validate", "--check", option, str(sample("igloo-airflow"))])
        assert exited.value.code == 2
        assert "is not a" in capsys.readouterr().err

    @pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage", b"ZHV|1|D0010002|", b"\x89PNG\r\n\x1a\n" * 100])
    def test_garbage(self, tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
        """Empty, binary and truncated input is reported, never a traceback."""
        path = tmp_path / "bad.uff"
        path.write_bytes(content)
        assert main(["validate", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"{path}: ") and "Traceback" not in err

    def test_missing_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A missing file is a usage error (exit 2) naming it (tests/cli/test_inputs.py: every command)."""
        with pytest.raises(SystemExit) as exited:
            main(["validate", str(tmp_path / "nope")])
        assert exited.value.code == 2
        assert f"{tmp_path / 'nope'}: no such file" in capsys.readouterr().err

    def test_bad_definitions(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A wrong flow definition (compiled on first use) makes the files of its flow invalid, naming its file and
        key; a misnamed definition file is a usage error at once."""
        (tmp_path / "D0010002.yaml").write_text("flow: D0010\nversion: 2\nname: x\ngroups: []\n")
        assert main(["validate", "--definitions", str(tmp_path), str(sample(KRAKEN))]) == 1
        assert capsys.readouterr().err.strip() == (
            f"{sample(KRAKEN)}: D0010002 line 1 group ZHV item 2 (flow_reference): the definition of D0010002 is "
            "invalid: D0010002.yaml: version: must be a non-empty string, not 2")
        (tmp_path / "D0010002.yaml").rename(tmp_path / "readings.yaml")
        assert main(["validate", "--definitions", str(tmp_path), str(sample(KRAKEN))]) == 2
        assert capsys.readouterr().err.strip() == (
            "dtn-bridge: readings.yaml: the file must be named <flow><version>.yaml, e.g. D0010002.yaml")


class TestParseAndRender:
    def test_round_trip_through_files(self, tmp_path: Path) -> None:
        """parse -o then render -o reproduce the example files byte for byte."""
        for example in sorted(EXAMPLES.glob("*.txt")):
            events = tmp_path / f"{example.stem}.ndjson"
            output = tmp_path / example.name
            assert main(["parse", str(example), "-o", str(events)]) == 0
            assert main(["render", str(events), "-o", str(output)]) == 0
            assert output.read_bytes() == example.read_bytes(), example.name

    def test_render_refuses_without_half_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A bad event leaves no output file and says which value is wrong."""
        events = tmp_path / "e.ndjson"
        assert main(["parse", str(sample(KRAKEN)), "-o", str(events)]) == 0
        lines = events.read_bytes().splitlines()
        last = orjson.loads(lines[-1])
        last["data"]["mpan_cores"]["mpan_core"] = "ABC"
        events.write_bytes(b"\n".join([*lines[:-1], orjson.dumps(last)]) + b"\n")
        output = tmp_path / "out.uff"
        assert main(["render", str(events), "-o", str(output)]) == 1
        assert "data.mpan_cores.mpan_core (NUM(13)): 'ABC' is not a number" in capsys.readouterr().err
        assert not output.exists() and list(tmp_path.iterdir()) == [events]

    @pytest.mark.parametrize(("change", "named"), [
        ({"dtcto": "MR\nZPT"}, "'dtcto'"), ({"dtcfileid": "a/b"}, "'dtcfileid'"),
        ({"dtccreated": "20161302000000"}, "'dtccreated'"), ({"meter_id": "M1\u2028ZPT"}, "control character")])
    def test_render_cannot_inject_lines(self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        change: dict[str, str], named: str) -> None:
        """A header attribute outside its DTC format, or a control character in a CHAR item, is one line on stderr
        and no output: render cannot add or split a line of the file."""
        events = tmp_path / "e.ndjson"
        assert main(["parse", str(sample(KRAKEN)), "-o", str(events)]) == 0
        parsed = [orjson.loads(line) for line in events.read_bytes().splitlines()]
        for event in parsed:
            if "meter_id" in change:
                event["data"]["mpan_cores"]["meter_reading_types"][0]["meter_id"] = change["meter_id"]
            else:
                event.update(change)
        events.write_bytes(b"\n".join(orjson.dumps(event) for event in parsed) + b"\n")
        assert main(["render", str(events)]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
        assert named in captured.err

    def test_render_not_json(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Input that is not NDJSON is named by line."""
        events = tmp_path / "e.ndjson"
        events.write_text('\nnot json\n')
        assert main(["render", str(events)]) == 1
        assert f"{events} line 2: not JSON" in capsys.readouterr().err

    def test_flows_lists_definitions(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`flows` lists every shipped definition."""
        assert main(["flows"]) == 0
        out = capsys.readouterr().out
        assert "D0010002  uk.dtc.D0010.v002" in out and "D0275001" in out

    def test_definitions_option_takes_precedence(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`--definitions DIR` (repeatable, the first wins) adds definitions over the shipped ones."""
        for folder, name in (("first", "Ours First"), ("second", "Ours Second")):
            (tmp_path / folder).mkdir()
            text = (EXAMPLES.parent / "flow_definitions" / "D0010002.yaml").read_text(encoding="utf-8")
            (tmp_path / folder / "D0010002.yaml").write_text(text.replace("\nname: ", f"\nname: {name} ", 1))
        assert main(["flows", "--definitions", str(tmp_path / "first"), "--definitions",
                     str(tmp_path / "second")]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 207 and [line for line in lines if "Ours" in line] == [
            next(line for line in lines if line.startswith("D0010002"))]
        assert "Ours First" in next(line for line in lines if line.startswith("D0010002"))

    def test_module_entry_point(self) -> None:
        """`python -m bridge` is the same command line."""
        result = subprocess.run([sys.executable, "-m", "bridge", "validate", str(sample(KRAKEN))],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr


class TestSignedParse:
    def test_parse_sign_verify(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`parse --sign-key` signs every event, and `verify` with the public JWKS accepts them all."""
        assert main(["keys", "generate", "--out", str(tmp_path), "--participant", "UDMS"]) == 0
        key = next(tmp_path.glob("*.key.pem"))
        jwks = next(tmp_path.glob("*.jwks.json"))
        events = tmp_path / "signed.ndjson"
        assert main(["parse", str(sample(KRAKEN)), "--sign-key", str(key), "-o", str(events)]) == 0
        signed = [orjson.loads(line) for line in events.read_bytes().splitlines()]
        assert len(signed) == 11 and all(event["signature"].count(".") == 2 for event in signed)
        capsys.readouterr()
        assert main(["verify", "--trust", str(jwks), str(events)]) == 0
        tampered = tmp_path / "tampered.ndjson"
        signed[4]["data"]["mpan_cores"]["bsc_validation_status"] = "F"
        tampered.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in signed))
        assert main(["verify", "--trust", str(jwks), str(tampered)]) == 1
        assert f"id={signed[4]['id']}: bad_signature" in capsys.readouterr().err
