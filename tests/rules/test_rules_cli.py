"""`dtn-bridge rules check`: decisions printed per file and event, exit codes, one line per configuration error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from bridge.cli import main
from tests.conftest import EXAMPLES, REPO, sample

KRAKEN = "DTC5259515123502080915D0010"  # UDMS (D) -> MRCY (X), 11 instances, OPER


def write_config(folder: Path, rules: Any = None, **extra: Any) -> Path:
    document: dict[str, Any] = {"participant": {"id": "MRCY", "role": "X"},
                                "flows": {"definitions": str(REPO / "flow_definitions")}, **extra}
    if rules is not None:
        document["rules"] = rules
    path = folder / "bridge.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


READINGS = {"name": "readings", "routing_key_prefix": "minimised.readings", "flows": ["D0010"],
            "remove": ["mpan_cores.site_visits"], "mask": ["mpan_cores.meter_reading_types.meter_id"]}


def test_accepted_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The file decision, then one decision per event with its outputs; exit 0."""
    config = write_config(tmp_path, {"subscribers": [READINGS]})
    assert main(["rules", "check", "--config", str(config), str(sample(KRAKEN))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12
    assert lines[0].endswith(" file: ACCEPT accepted inbound D0010002 UDMS: every rule passed")
    assert lines[6].endswith(" #6: ACCEPT accepted inbound D0010002 UDMS: every rule passed -> "
                             "inbound.D0010002.UDMS.MRCY, minimised.readings.D0010002.UDMS.MRCY (route readings, "
                             "redacted mpan_cores.site_visits,mpan_cores.meter_reading_types.meter_id)")
    assert "2200031930792" not in "".join(lines)  # no MPAN, no reading: decisions are safe to share


def test_rejected_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file addressed to someone else is rejected as a whole: no event decisions; exit 1."""
    config = write_config(tmp_path)
    assert main(["rules", "check", "--config", str(config), str(EXAMPLES / "D0010002.txt")]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.endswith("file: REJECT addressee inbound D0010002 SYNA: D0010002 is addressed to SYNB, not to "
                         "this participant MRCY")


def test_test_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A TR01 file goes to the test prefix and exchange, never to production keys."""
    text = sample(KRAKEN).read_text(encoding="utf-8").replace("|OPER|", "|TR01|", 1)
    path = tmp_path / "test.uff"
    path.write_text(text, encoding="utf-8")
    config = write_config(tmp_path, {"test_data": {"exchange": "dtn.test"}})
    assert main(["rules", "check", "--json", "--config", str(config), str(path)]) == 0
    records = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["rule"] == "test_data.routed" and records[0]["test"] is True
    assert all(record["outputs"] == [{"routing_key": "test.inbound.D0010002.UDMS.MRCY", "exchange": "dtn.test",
                                      "route": None, "redacted": None}] for record in records[1:])


def test_events_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """NDJSON events, judged in the direction given; denied recipients rejected."""
    assert main(["parse", str(sample(KRAKEN)), "-o", str(tmp_path / "events.ndjson")]) == 0
    config = write_config(tmp_path, {"participants": {"outbound": {"deny": ["MRCY"]}}})
    capsys.readouterr()
    assert main(["rules", "check", "--json", "--direction", "outbound", "--config", str(config),
                 str(tmp_path / "events.ndjson")]) == 1
    records = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 11
    assert {(r["rule"], r["direction"], r["participant"]) for r in records} == {
        ("participant.denied", "outbound", "MRCY")}
    assert records[0]["input"].endswith("events.ndjson line 1") and records[0]["outputs"] == []


def test_events_detected_by_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(sample(KRAKEN)), "-o", str(tmp_path / "events.txt")]) == 0
    config = write_config(tmp_path)
    capsys.readouterr()
    assert main(["rules", "check", "--config", str(config), str(tmp_path / "events.txt")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 11


def test_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.uff"
    path.write_text("ZHV|1|D0010002|\n", encoding="utf-8")
    assert main(["rules", "check", "--config", str(write_config(tmp_path)), str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"{path}: ")


def test_bad_events_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text("{\"type\": 1}\nnot json\n", encoding="utf-8")
    assert main(["rules", "check", "--config", str(write_config(tmp_path)), str(path)]) == 1
    captured = capsys.readouterr()
    assert "REJECT event.malformed" in captured.out
    assert captured.err.startswith(f"dtn-bridge: {path} line 2: not JSON")


def test_rules_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without inputs it checks the rules themselves."""
    config = write_config(tmp_path, {"subscribers": [READINGS]})
    assert main(["rules", "check", "--config", str(config)]) == 0
    assert capsys.readouterr().out == f"{config}: rules valid (1 subscriber routes)\n"


@pytest.mark.parametrize(("rules", "extra", "expected"), [
    ({"limits": {"max_event_bytes": 0}}, {}, "rules.limits.max_event_bytes: must be at least 1, got 0"),
    ("everything", {}, "rules: expected a mapping"),
    (None, {"brokr": {}}, "brokr: unknown key"),
])
def test_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], rules: Any, extra: dict[str, Any],
                       expected: str) -> None:
    """One line naming the file and the dotted key; exit 2."""
    config = write_config(tmp_path, rules, **extra)
    assert main(["rules", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dtn-bridge: {config}: ") and expected in err and len(err.splitlines()) == 1
