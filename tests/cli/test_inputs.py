"""The command line's inputs: `-` is stdin for every command that reads files, a missing file is a usage error
(exit 2), `validate --json`, the progress line, and `render` streaming to stdout."""

from __future__ import annotations

import io
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

import bridge.cli.flows
import bridge.cli.progress
from bridge.cli import main
from bridge.cli.progress import Progress
from tests.conftest import REPO, sample

KRAKEN = sample("DTC5259515123502080915D0010")


def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """The real command, stdin and stderr pipes (so not a terminal)."""
    return subprocess.run([sys.executable, "-m", "bridge", *args], input=stdin, capture_output=True, cwd=REPO,
                          check=False)


class TestStdin:
    def test_parse_and_validate_read_stdin(self) -> None:
        """`parse -` and `validate -` read the file from stdin; the round trip through pipes is byte for byte."""
        original = KRAKEN.read_bytes()
        validated = cli("validate", "-", stdin=original)
        assert validated.returncode == 0, validated.stderr
        assert validated.stdout == b"-: valid D0010002, 11 flow instances, 35 groups\n"
        parsed = cli("parse", "-", stdin=original)
        assert parsed.returncode == 0, parsed.stderr
        assert parsed.stdout == cli("parse", str(KRAKEN)).stdout  # the same events as from the file
        rendered = cli("render", "-", stdin=parsed.stdout)
        assert rendered.returncode == 0 and rendered.stdout == original

    def test_stdin_defects_named_dash(self) -> None:
        """A defective file on stdin is reported under `-`, exit 1, no traceback."""
        result = cli("validate", "-", stdin=sample("sureserve").read_bytes())
        assert result.returncode == 1
        assert result.stderr.decode().splitlines()[0].startswith("-: D0155001 line 8 group ZPT item 2:")

    def test_long_line_on_stdin(self) -> None:
        """Stdin is not scanned first: a line over the limit still ends the check with its defect."""
        result = cli("validate", "-", stdin=b"ZHV|" + b"x" * 70_000 + b"\n")
        assert result.returncode == 1 and b"Traceback" not in result.stderr
        assert b"-: line 1" in result.stderr

    def test_rules_check_and_archive_cat_read_stdin(self, tmp_path: Path) -> None:
        """`rules check -` takes a DTN file or events from stdin; `archive cat -` prints a plain file from stdin."""
        config = tmp_path / "bridge.yaml"
        config.write_text(f"""{{"participant": {{"id": "MRCY", "role": "X"}}, "watch": {{"inbound": "in"}},
                           "flows": {{"definitions": "{REPO / "flow_definitions"}"}}}}""")
        result = cli("rules", "check", "--config", str(config), "-", stdin=KRAKEN.read_bytes())
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().splitlines()[0].startswith("- file: ACCEPT")
        catted = cli("archive", "cat", "--config", str(config), "-", stdin=b"plain bytes\n")
        assert catted.returncode == 0 and catted.stdout == b"plain bytes\n"


class TestMissingFile:
    @pytest.mark.parametrize("command", [
        ["parse"], ["validate"], ["render"], ["verify", "--trust", "x.jwks"], ["sign", "--key", "x.pem"],
        ["rules", "check", "--config", "x.yaml"], ["archive", "cat", "--config", "x.yaml"]])
    def test_usage_error(self, command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A missing input file is a usage error (exit 2) naming it, before anything else is read."""
        missing = tmp_path / "nope.uff"
        with pytest.raises(SystemExit) as exited:
            main([*command, str(missing)])
        assert exited.value.code == 2
        assert f"{missing}: no such file" in capsys.readouterr().err

    def test_folder_is_usage_error(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["validate", str(tmp_path)])
        assert exited.value.code == 2 and "is a folder" in capsys.readouterr().err


class TestValidateJson:
    def test_one_object_per_defect_then_per_file(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`validate --json`: each defect and warning an object on stdout, then one object per file."""
        bad, good = sample("sureserve"), KRAKEN
        assert main(["validate", "--json", str(bad), str(good)]) == 1
        out, err = capsys.readouterr()
        records = [orjson.loads(line) for line in out.splitlines()]
        assert err == ""
        assert records[0] == {"file": str(bad), "severity": "error", "flow": "D0155001", "rule": "trailer-group-count",
                              "message": "Total Group Count is '144' but the file has 6", "line": 8, "group": "ZPT",
                              "item": 2, "text": "D0155001 line 8 group ZPT item 2: Total Group Count is '144' but "
                                                 "the file has 6"}
        assert records[1]["rule"] == "trailer-flow-count"
        assert records[2] == {"file": str(bad), "valid": False, "flow": "D0155001", "flow_count": None,
                              "group_count": None, "defects": 2, "warnings": 0}
        assert records[3] == {"file": str(good), "valid": True, "flow": "D0010002", "flow_count": 11,
                              "group_count": 35, "defects": 0, "warnings": 0}

    def test_warnings(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["validate", "--json", "--check", "mpan_check_digit=warn", str(sample("igloo-airflow"))]) == 0
        records = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert {record.get("severity") for record in records[:-1]} == {"warning"}
        assert records[0]["rule"] == "mpan-check-digit" and records[0]["item_key"] == "mpan_core"
        assert records[-1]["valid"] is True and records[-1]["warnings"] == len(records) - 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestProgress:
    def test_silent_when_not_a_terminal(self) -> None:
        """Through a pipe (scripts, logs) there is no progress line at all."""
        result = cli("parse", str(KRAKEN))
        assert result.returncode == 0 and result.stderr == b""

    def test_redrawn_at_most_four_times_a_second(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A thousand updates over ten seconds (a clock of our own) draw the line about 40 times; it is cleared at the
        end."""
        now = [0.0]
        monkeypatch.setattr(bridge.cli.progress.time, "monotonic", lambda: now[0])
        terminal = _Terminal()
        with Progress("checking big.uff", 10**6, stream=terminal, delay=0) as progress:
            for _ in range(1000):
                progress.advance(1000)
                now[0] += 0.01
        assert 38 <= progress.drawn <= 41  # 4 a second (float steps of the clock may lose one)
        text = terminal.getvalue()
        assert text.startswith("\rchecking big.uff: 0% 0.0 MB of 1.0 MB") and text.endswith("\r")
        assert "% 0.9 MB of 1.0 MB" in text

    def test_quick_work_shows_nothing(self) -> None:
        """Work done before the delay draws no line at all (a small file on a terminal prints just its result)."""
        terminal = _Terminal()
        with Progress("checking small.uff", 100, stream=terminal) as progress:
            progress.advance(100)
        assert progress.drawn == 0 and terminal.getvalue() == ""

    def test_counts_the_bytes_of_a_real_check(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """`validate` on a terminal counts every byte of the file it checks."""
        seen: list[Progress] = []

        class Seen(Progress):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs, stream=_Terminal(), delay=0)
                seen.append(self)

        monkeypatch.setattr(bridge.cli.flows, "Progress", Seen)
        assert main(["validate", str(KRAKEN)]) == 0
        assert seen[0].done == seen[0].total == KRAKEN.stat().st_size and seen[0].drawn >= 1


class TestRenderStreams:
    @staticmethod
    def _events(path: Path, count: int) -> Path:
        """`count` instances of one D0010 file, made from the 11 real ones (render checks no ids)."""
        events = [orjson.loads(line) for line in cli("parse", str(KRAKEN)).stdout.splitlines()]
        with open(path, "wb") as stream:
            for index in range(1, count + 1):
                stream.write(orjson.dumps({**events[(index - 1) % 11], "dtcindex": index, "dtcflowcount": count}))
                stream.write(b"\n")
        return path

    def test_memory_does_not_grow_with_the_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Rendering to stdout holds at most RENDER_HOLD_BYTES of output (here 16 KiB), not the file: the traced
        peak of a file ten times longer is about the same."""
        monkeypatch.setattr(bridge.cli.flows, "RENDER_HOLD_BYTES", 1 << 14)
        peaks = []
        for count in (300, 3000):
            path = self._events(tmp_path / f"{count}.ndjson", count)
            sink = _Sink()
            monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(sink)))
            main(["render", str(path)])  # compiles the definition first: not part of what is measured
            tracemalloc.start()
            try:
                assert main(["render", str(path)]) == 0
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
        assert sink.written > 2 * 200_000  # two renders of the larger file, which the old render held whole
        assert peaks[1] < peaks[0] + 64_000, peaks


class _Sink(io.RawIOBase):
    """A stdout that keeps nothing: only what the command holds is traced."""

    def __init__(self) -> None:
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.written += len(data)
        return len(data)
