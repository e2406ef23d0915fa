"""A broadcast file through the inbound chain (built in the daemon and in a worker process): its events and its
manifest are published under `...<from>.broadcast`, with the same bytes as when it is not broadcast."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from bridge.adapters.ledger import Ledger
from bridge.adapters.processes import ChildProcess
from bridge.adapters.spool import Spool
from bridge.config import load_config
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.inbound import BuildStage, InboundPipeline
from bridge.inbound.build import built_messages
from bridge.inbound.workers import BuildWorker
from bridge.ports import OutgoingMessage
from bridge.rules.parse import parse_rules
from bridge.service import build_values
from bridge.signing import Signer
from tests.conftest import EXAMPLES, REPO
from tests.fakes import FakePublisher
from tests.helpers import unsigned

SIGNER = Signer.generate()


@pytest.fixture(params=["in-process", "worker"])
def where(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def publish(tmp_path: Path, definitions: DefinitionSet, where: str, rules: dict[str, Any] | None,
            source: Path) -> list[OutgoingMessage]:
    """One file through a fresh chain whose rules are `rules`; the messages it published."""
    folder = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
    folders = {name: folder / name for name in ("inbound", "processing", "archive", "quarantine")}
    for each in folders.values():
        each.mkdir(parents=True)
    config_path = folder / "bridge.yaml"
    config_path.write_text(json.dumps({"participant": {"id": "SYNB", "role": "R"},
                                       "flows": {"definitions": str(REPO / "flow_definitions")},
                                       "log": {"level": "warning", "format": "json"}, "rules": rules}))
    parsed = parse_rules(rules, participant_id="SYNB", participant_role="R", definitions=definitions)
    worker: BuildWorker | None = None
    build: BuildStage
    if where == "worker":
        worker = BuildWorker(build_values(load_config(config_path), SIGNER), 1, spawn=ChildProcess)
        worker.start()
        build = worker
    else:
        build = functools.partial(built_messages, reader=FlowFileReader(definitions), rules=parsed,
                                  sign=SIGNER.signed_json)
    try:
        spool = Spool(folders["processing"], folders["archive"], folders["quarantine"])
        publisher = FakePublisher()
        pipeline = InboundPipeline(reader=FlowFileReader(definitions), build=build, sign=SIGNER.signed_json,
                                   publisher=publisher, ledger=Ledger(folder / "ledger.db"), spool=spool,
                                   rules=parsed, on_decision=lambda _decision, _count: None)
        (folders["inbound"] / source.name).write_bytes(source.read_bytes())
        outcome = pipeline.process(spool.claim(folders["inbound"] / source.name))
        assert outcome.outcome == "archived", outcome
        return publisher.published
    finally:
        if worker is not None:
            worker.close()


def with_flag(tmp_path: Path, flag: str) -> Path:
    """The D0275 example with its ZHV broadcast flag (field 10) set."""
    lines = (EXAMPLES / "D0275001.txt").read_text().split("\n")
    fields = lines[0].split("|")
    fields[10] = flag
    lines[0] = "|".join(fields)
    path = tmp_path / f"D0275001-{flag}.txt"
    path.write_text("\n".join(lines))
    return path


def test_a_listed_flow_is_published_under_broadcast(tmp_path: Path, definitions: DefinitionSet,
                                                    where: str) -> None:
    plain = publish(tmp_path, definitions, where, None, EXAMPLES / "D0275001.txt")
    broadcast = publish(tmp_path, definitions, where, {"broadcast": {"flows": ["D0275"]}},
                        EXAMPLES / "D0275001.txt")
    assert [m.routing_key for m in plain] == ["inbound.D0275001.SYNA.SYNB"] * 2 + [
        "file.received.D0275001.SYNA.SYNB"]
    assert [m.routing_key for m in broadcast] == ["inbound.D0275001.SYNA.broadcast"] * 2 + [
        "file.received.D0275001.SYNA.broadcast"]
    assert [unsigned(m.body) for m in broadcast] == [unsigned(m.body) for m in plain]  # same event bytes, manifest too
    assert [m.message_id for m in broadcast] == [m.message_id for m in plain]


def test_the_zhv_flag_makes_a_file_broadcast(tmp_path: Path, definitions: DefinitionSet, where: str) -> None:
    keys = [m.routing_key for m in publish(tmp_path, definitions, where, None, with_flag(tmp_path, "Y"))]
    assert keys == ["inbound.D0275001.SYNA.broadcast"] * 2 + ["file.received.D0275001.SYNA.broadcast"]
    kept = [m.routing_key for m in publish(tmp_path, definitions, where, {"broadcast": {"flag_values": []}},
                                                with_flag(tmp_path, "Y"))]
    assert kept == ["inbound.D0275001.SYNA.SYNB"] * 2 + ["file.received.D0275001.SYNA.SYNB"]
