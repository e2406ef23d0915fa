"""The inbound chain's pure logic with a fake publisher (the real broker is in tests/e2e): the same messages whether
the build stage runs here or in the worker process, and what a file that changes under the bridge comes to."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import structlog

from bridge.adapters.ledger import Ledger
from bridge.adapters.spool import Spool
from bridge.adapters.worker import BuildWorker
from bridge.build import built_messages
from bridge.config import BridgeConfig, load_config
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.flowfile import check_file, file_events
from bridge.inbound import BuildStage, InboundPipeline
from bridge.ports import OutgoingMessage, PublishResult
from bridge.rules.parse import parse_rules
from bridge.signing import Signer
from tests.conftest import EXAMPLES, REPO

SIGNER = Signer.generate()


class TakingPublisher:
    """Takes every message; `before` runs once, before the first is taken."""

    def __init__(self, before: Any = None) -> None:
        self.before = before
        self.taken: list[OutgoingMessage] = []

    def publish_all(self, messages: Any, timeout: float = 60.0) -> PublishResult:
        if self.before is not None:
            self.before, before = None, self.before
            before()
        batch = list(messages)
        self.taken += batch
        return PublishResult(len(batch), len(batch))


def bridge_config(tmp_path: Path) -> BridgeConfig:
    path = tmp_path / "bridge.yaml"
    path.write_text(json.dumps({"participant": {"id": "SYNB", "role": "X"},
                                "flows": {"definitions": str(REPO / "flow_definitions")},
                                "log": {"level": "warning", "format": "json"}}))
    return load_config(path)


@pytest.fixture(params=["in-process", "worker", "2 workers"])
def build(request: pytest.FixtureRequest, tmp_path: Path, definitions: DefinitionSet) -> Iterator[BuildStage]:
    if request.param != "in-process":
        worker = BuildWorker(bridge_config(tmp_path), SIGNER, 2 if request.param == "2 workers" else 1)
        worker.start()
        yield worker
        worker.close()
    else:
        rules = parse_rules(None, participant_id="SYNB", participant_role="X", definitions=definitions)
        yield functools.partial(built_messages, reader=FlowFileReader(definitions), rules=rules,
                                sign=SIGNER.signed_json)


class Installation:
    def __init__(self, tmp_path: Path, definitions: DefinitionSet, build: BuildStage, publisher: TakingPublisher,
                 checks: dict[str, str] | None = None):
        self.folders = {name: tmp_path / name for name in ("inbound", "processing", "archive", "quarantine")}
        for folder in self.folders.values():
            folder.mkdir()
        self.spool = Spool(self.folders["processing"], self.folders["archive"], self.folders["quarantine"])
        self.decisions: list[tuple[str, int]] = []
        self.pipeline = InboundPipeline(
            reader=FlowFileReader(definitions, checks=checks), build=build, sign=SIGNER.signed_json, publisher=publisher,
            ledger=Ledger(tmp_path / "ledger.db"), spool=self.spool,
            rules=parse_rules(None, participant_id="SYNB", participant_role="X", definitions=definitions),
            on_decision=lambda decision, count: self.decisions.append((decision.rule, count)))

    def claim(self, source: Path) -> Any:
        (self.folders["inbound"] / source.name).write_bytes(source.read_bytes())
        return self.spool.claim(self.folders["inbound"] / source.name)


def test_messages_are_the_same_both_ways(tmp_path: Path, definitions: DefinitionSet, build: BuildStage) -> None:
    """Whichever process builds, the published bytes are those of signing each event here (Ed25519: one answer)."""
    publisher = TakingPublisher()
    installation = Installation(tmp_path, definitions, build, publisher)
    outcome = installation.pipeline.process(installation.claim(EXAMPLES / "D0275001.txt"))
    assert outcome.outcome == "archived" and outcome.events == 2
    events, manifest = publisher.taken[:-1], publisher.taken[-1]
    reader = FlowFileReader(definitions)
    expected = [SIGNER.sign_to_json(event) for event in
                file_events(EXAMPLES / "D0275001.txt", reader, check_file(EXAMPLES / "D0275001.txt", reader))]
    assert [message.body for message in events] == expected
    assert [message.routing_key for message in events] == ["inbound.D0275001.SYNA.SYNB"] * 2
    assert json.loads(manifest.body)["type"] == "uk.dtc.file.received"


def test_a_file_of_many_runs_keeps_its_order(tmp_path: Path, definitions: DefinitionSet, build: BuildStage) -> None:
    """Hundreds of instances (several runs of 64, shared between workers): every message in file order, as built
    here, and every event's governance decision counted once."""
    path = tmp_path / "D0275001-many.txt"
    path.write_text("".join(synthetic_file(definitions["D0275001"], 11, instances=300, fanout=1)))
    publisher = TakingPublisher()
    installation = Installation(tmp_path, definitions, build, publisher)
    outcome = installation.pipeline.process(installation.claim(path))
    assert outcome.outcome == "archived" and outcome.events == 300
    reader = FlowFileReader(definitions)
    expected = [SIGNER.sign_to_json(event) for event in file_events(path, reader, check_file(path, reader))]
    assert [message.body for message in publisher.taken[:-1]] == expected
    file_decisions, event_decisions = installation.decisions[0], installation.decisions[1:]
    assert file_decisions[1] == 1 and sum(count for _rule, count in event_decisions) == 300


def test_file_changed_between_the_passes_is_quarantined(tmp_path: Path, definitions: DefinitionSet,
                                                        build: BuildStage) -> None:
    claimed: list[Path] = []

    def rewrite() -> None:  # a writer that kept the file open, between the check and the build
        claimed[0].write_bytes(claimed[0].read_bytes().replace(b"|3897788.8|", b"|3897788.9|", 1))

    publisher = TakingPublisher(rewrite)
    installation = Installation(tmp_path, definitions, build, publisher)
    claim = installation.claim(EXAMPLES / "D0010002.txt")
    claimed.append(claim.path)
    outcome = installation.pipeline.process(claim)
    assert outcome.outcome == "quarantined" and outcome.rule == "file-changed"
    assert "changed between the passes" in (outcome.reason or "")
    report = json.loads(outcome.final_path.with_name(outcome.final_path.name + ".error.json").read_text())
    assert report["defects"][0]["rule"] == "file-changed"
    assert not list(installation.folders["archive"].rglob("*.txt"))


def test_warnings_are_logged_by_location_and_listed_in_the_manifest(tmp_path: Path,
                                                                    definitions: DefinitionSet) -> None:
    """A check set to warn: the file is published, the log names where and which rule (never the MPAN Core), and
    the manifest lists the warnings."""
    rules = parse_rules(None, participant_id="SYNB", participant_role="X", definitions=definitions)
    build = functools.partial(built_messages, reader=FlowFileReader(definitions), rules=rules,
                              sign=SIGNER.signed_json)
    publisher = TakingPublisher()
    installation = Installation(tmp_path, definitions, build, publisher, checks={"mpan_check_digit": "warn"})
    wrong = tmp_path / "D0275001.txt"
    wrong.write_text((EXAMPLES / "D0275001.txt").read_text().replace("25B|4429002452263|", "25B|4429002452260|"))
    with structlog.testing.capture_logs() as logs:
        outcome = installation.pipeline.process(installation.claim(wrong))
    assert outcome.outcome == "archived" and outcome.events == 2
    warned = [entry for entry in logs if entry["event"] == "file_check_warnings"]
    assert [entry["warnings"] for entry in warned] == [
        ["D0275001 line 101 group 25B item 1 (mpan_core, NUM(13)): mpan-check-digit"]]
    assert "4429002452260" not in repr(logs)
    manifest = json.loads(publisher.taken[-1].body)
    assert [(warning["line"], warning["rule"]) for warning in manifest["data"]["warnings"]] == [
        (101, "mpan-check-digit")]


class TestCheckAhead:
    """The next file's first pass, done on a thread while the one before it publishes."""

    @pytest.fixture
    def installation(self, tmp_path: Path, definitions: DefinitionSet) -> Iterator[Installation]:
        rules = parse_rules(None, participant_id="SYNB", participant_role="X", definitions=definitions)
        build = functools.partial(built_messages, reader=FlowFileReader(definitions), rules=rules,
                                  sign=SIGNER.signed_json)
        installed = Installation(tmp_path, definitions, build, TakingPublisher())
        yield installed
        installed.pipeline.close()

    def test_the_check_done_ahead_is_used(self, installation: Installation) -> None:
        claim = installation.claim(EXAMPLES / "D0275001.txt")
        with mock.patch("bridge.inbound.check_file", wraps=check_file) as checks:
            installation.pipeline.check_ahead(claim)
            outcome = installation.pipeline.process(claim)
        assert outcome.outcome == "archived" and outcome.events == 2
        assert checks.call_count == 1  # on the thread, not again

    def test_a_file_changed_since_is_checked_again(self, installation: Installation) -> None:
        """The check ahead saw a valid file; the claimed file then lost its trailer: the check that counts is the
        one of the bytes processed, so nothing is published and the report names the defect."""
        claim = installation.claim(EXAMPLES / "D0275001.txt")
        installation.pipeline.check_ahead(claim)
        installation.pipeline._ahead[1].result()  # type: ignore[index]  # the check ahead is done
        claim.path.write_bytes(b"".join(claim.path.read_bytes().splitlines(keepends=True)[:-1]))
        outcome = installation.pipeline.process(claim)
        assert outcome.outcome == "quarantined" and outcome.rule == "trailer-missing"  # not "file-changed"

    def test_a_check_ahead_of_another_file_is_not_used(self, installation: Installation) -> None:
        first = installation.claim(EXAMPLES / "D0275001.txt")
        second = installation.claim(EXAMPLES / "D0010002.txt")
        installation.pipeline.check_ahead(second)
        assert installation.pipeline.process(first).events == 2
        assert installation.pipeline.process(second).outcome == "archived"  # checked here: its check ahead was dropped
