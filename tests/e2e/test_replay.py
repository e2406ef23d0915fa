"""Replay from the event store: rebuilt files are byte-exact; republished events keep their ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from tests.conftest import EXAMPLES, sample
from tests.e2e.conftest import Bridge

FILES = ["DTC5259515123502080915D0010", "ocdiff_D0155001_a", "igloo-airflow"]


@pytest.fixture
def published(make_bridge: Any, run_service: Any) -> tuple[Bridge, list[Path], datetime]:
    """A bridge that has published some real samples and examples into its event store."""
    bridge: Bridge = make_bridge(checks={"mpan_check_digit": "warn"})  # igloo's made-up MPANs get through
    start = datetime.now(UTC) - timedelta(seconds=2)
    files = [sample(name) for name in FILES] + [EXAMPLES / "D0275001.txt", EXAMPLES / "P0142001.txt"]
    running = run_service(bridge)
    for path in files:
        bridge.drop(path)
    bridge.wait_settled(len(files))
    running.close()
    return bridge, files, start


class TestReplay:
    def test_rebuild_files(self, published: tuple[Bridge, list[Path], datetime], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
        """Every file is rebuilt from the stream byte for byte."""
        bridge, files, start = published
        out = tmp_path / "rebuilt"
        assert main(["replay", "--config", str(bridge.config_path), "--since", start.isoformat(),
                     "--to-dir", str(out), "--idle-seconds", "2"]) == 0
        rebuilt = sorted(path.read_bytes() for path in out.iterdir())
        assert rebuilt == sorted(path.read_bytes() for path in files)
        assert f"{len(files)} files rebuilt" in capsys.readouterr().out

    def test_filter_by_flow(self, published: tuple[Bridge, list[Path], datetime], tmp_path: Path) -> None:
        """--flow keeps one flow's files only."""
        bridge, _files, start = published
        out = tmp_path / "d0010"
        assert main(["replay", "--config", str(bridge.config_path), "--since", start.isoformat(),
                     "--flow", "D0010", "--to-dir", str(out), "--idle-seconds", "2"]) == 0
        assert [path.read_bytes() for path in out.iterdir()] == [sample(FILES[0]).read_bytes()]

    def test_republish(self, published: tuple[Bridge, list[Path], datetime]) -> None:
        """--republish sends the same events, same ids, under a prefix; --participant matches sender or recipient."""
        bridge, _files, start = published
        original = {event["id"] for _props, event in bridge.captured()}
        replayed = bridge.admin.probe_queue(bridge.topology.exchange, "replayed.#")
        assert main(["replay", "--config", str(bridge.config_path), "--since", start.isoformat(),
                     "--participant", "UDMS", "--republish", "replayed", "--idle-seconds", "2"]) == 0
        got = bridge.admin.read_all(replayed)
        assert len(got) == 11 + 2 and {props.message_id for _m, props, _b in got} <= original
        assert {method.routing_key for method, _p, _b in got} == {"replayed.inbound.D0010002.UDMS.MRCY",
                                                                 "replayed.inbound.D0379001.PION.UDMS"}
