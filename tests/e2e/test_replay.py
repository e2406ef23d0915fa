"""Replay from the event store: rebuilt files are byte-exact; republished events keep their ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.cli import main
from bridge.dtn.reader import FlowFileReader
from bridge.signing import Signer
from tests.conftest import EXAMPLES, sample
from tests.e2e.conftest import Bridge
from tests.outbound.outbound_helpers import source_file

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


class TestUntrustedStore:
    def test_bad_stored_events_are_reported_one_by_one(
        self, published: tuple[Bridge, list[Path], datetime], tmp_path: Path, reader: FlowFileReader,
        capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Beside the honest events, the store holds a JSON list, a non-JSON body, an unsigned event, a signed
        event with a malformed dtcindex and a signed source file whose identifier would name a file outside the
        folder: each is reported on its own line, nothing is written outside --to-dir, and the honest files are
        rebuilt byte for byte."""
        bridge, files, start = published
        signer = Signer.from_key_file(bridge.root / "keys" / "bridge.key.pem")
        source = source_file(EXAMPLES / "D0030001.txt", reader)
        escaping = [signer.sign(event | {"dtcfileid": "../../x"}) for event in source.events]
        unsigned = source.events[0] | {"dtcfileid": "U1"}
        bad_index = signer.sign(source.events[0] | {"dtcfileid": "I1", "dtcindex": "x"})
        bodies = [b"[1, 2]", b"{not json", orjson.dumps(unsigned), orjson.dumps(bad_index)]
        bodies += [orjson.dumps(event) for event in escaping]
        for body in bodies:
            bridge.admin.channel.basic_publish(bridge.topology.exchange, "inbound.D0030001.SYNA.SYNB", body)
        out = tmp_path / "deep" / "rebuilt"
        assert main(["replay", "--config", str(bridge.config_path), "--since", start.isoformat(),
                     "--to-dir", str(out), "--idle-seconds", "2"]) == 1
        captured = capsys.readouterr()
        assert sorted(path.read_bytes() for path in out.iterdir()) == sorted(path.read_bytes() for path in files)
        assert not (tmp_path / "x").exists() and not (tmp_path / "deep" / "x").exists()
        bad = [line for line in captured.err.splitlines() if line.startswith("dtn-bridge: replay: ")]
        assert len(bad) == 5, captured.err
        assert "not a JSON object" in bad[0] and "not JSON" in bad[1] and "signature" in bad[2]
        assert "dtcindex" in bad[3] and "dtcfileid" in bad[4] and "../../x" in bad[4]
        assert "Traceback" not in captured.err and "5 bad" in captured.out

    def test_without_trust_the_replay_says_it_is_unverified(
        self, published: tuple[Bridge, list[Path], datetime], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        bridge, files, start = published
        config = json.loads(bridge.config_path.read_text())
        del config["signing"]["trust"]
        untrusted = bridge.root / "untrusted.yaml"
        untrusted.write_text(json.dumps(config))
        assert main(["replay", "--config", str(untrusted), "--since", start.isoformat(),
                     "--to-dir", str(tmp_path / "out"), "--idle-seconds", "2"]) == 0
        captured = capsys.readouterr()
        assert "UNVERIFIED" in captured.err and "(UNVERIFIED)" in captured.out
        assert len(list((tmp_path / "out").iterdir())) == len(files)

    def test_republish_survives_an_id_too_long_for_a_message_id(
        self, published: tuple[Bridge, list[Path], datetime], reader: FlowFileReader,
        capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An AMQP message id holds at most 255 bytes, a CloudEvents id any length: a signed stored event with a
        300-character id is republished (under the message id it was stored with, none here), not a traceback."""
        bridge, _files, start = published
        signer = Signer.from_key_file(bridge.root / "keys" / "bridge.key.pem")
        event = source_file(EXAMPLES / "D0030001.txt", reader).events[0] | {"id": "x" * 300}
        bridge.admin.channel.basic_publish(bridge.topology.exchange, "inbound.D0030001.SYNA.SYNB",
                                           orjson.dumps(signer.sign(event)))
        replayed = bridge.admin.probe_queue(bridge.topology.exchange, "again.#")
        assert main(["replay", "--config", str(bridge.config_path), "--since", start.isoformat(),
                     "--flow", "D0030", "--republish", "again", "--idle-seconds", "2"]) == 0
        [(_method, props, body)] = bridge.admin.read_all(replayed)
        assert orjson.loads(body)["id"] == "x" * 300 and not props.message_id
        assert "Traceback" not in capsys.readouterr().err
