"""The inbound chain's pure logic with a fake publisher (the real broker is in tests/e2e): the same messages whether
the build stage runs here or in the worker process, and what a file that changes under the bridge comes to."""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import structlog

from bridge.adapters.encryption import FileCipher
from bridge.adapters.ledger import Ledger
from bridge.adapters.processes import ChildProcess
from bridge.adapters.spool import MAX_NAME_BYTES, Spool
from bridge.config import BridgeConfig, load_config
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.synthetic import synthetic_file
from bridge.inbound import BuildStage, InboundPipeline
from bridge.inbound.build import built_messages
from bridge.inbound.flowfile import check_file, file_events
from bridge.inbound.workers import BuildWorker
from bridge.ports import OutgoingMessage, PublishResult
from bridge.rules.parse import parse_rules
from bridge.service import build_values
from bridge.signing import Signer, TrustStore
from tests.conftest import EXAMPLES, REPO
from tests.helpers import unsigned

SIGNER = Signer.generate()
TRUST = TrustStore.from_jwks(SIGNER.public_jwks())


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


@pytest.fixture(params=["in-process", "worker", "2 workers"], scope="module")
def build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          definitions: DefinitionSet) -> Iterator[BuildStage]:
    """The build stage three ways; the worker processes serve every test of the module, as the daemon's serve
    every file (their start is paid once per kind, not per test)."""
    if request.param != "in-process":
        config = bridge_config(tmp_path_factory.mktemp("build"))
        worker = BuildWorker(build_values(config, SIGNER), 2 if request.param == "2 workers" else 1, spawn=ChildProcess)
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
        self.publisher = publisher
        self.pipeline = InboundPipeline(
            reader=FlowFileReader(definitions, checks=checks), build=build, sign=SIGNER.signed_json,
            publisher=publisher, ledger=Ledger(tmp_path / "ledger.db"), spool=self.spool,
            rules=parse_rules(None, participant_id="SYNB", participant_role="X", definitions=definitions),
            on_decision=lambda decision, count: self.decisions.append((decision.rule, count)))

    def claim(self, source: Path) -> Any:
        (self.folders["inbound"] / source.name).write_bytes(source.read_bytes())
        return self.spool.claim(self.folders["inbound"] / source.name)


def test_messages_are_the_same_both_ways(tmp_path: Path, definitions: DefinitionSet, build: BuildStage) -> None:
    """Whichever process builds, the published bytes are those of signing each event here: the same canonical event,
    byte for byte, and a signature that verifies (ES256 signatures of one event differ)."""
    publisher = TakingPublisher()
    installation = Installation(tmp_path, definitions, build, publisher)
    outcome = installation.pipeline.process(installation.claim(EXAMPLES / "D0275001.txt"))
    assert outcome.outcome == "archived" and outcome.events == 2
    events, manifest = publisher.taken[:-1], publisher.taken[-1]
    reader = FlowFileReader(definitions)
    expected = [SIGNER.sign_to_json(event) for event in
                file_events(EXAMPLES / "D0275001.txt", reader, check_file(EXAMPLES / "D0275001.txt", reader))]
    assert [unsigned(message.body) for message in events] == [unsigned(body) for body in expected]
    assert all(TRUST.verify(json.loads(message.body)).kid == SIGNER.kid for message in events)
    assert [message.routing_key for message in events] == ["inbound.D0275001.SYNA.SYNB"] * 2
    assert json.loads(manifest.body)["type"] == "uk.dtc.file.received.v1"


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
    assert [unsigned(message.body) for message in publisher.taken[:-1]] == [unsigned(body) for body in expected]
    assert all(TRUST.verify(json.loads(message.body)).kid == SIGNER.kid for message in publisher.taken[:-1])
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


@pytest.fixture
def installation(tmp_path: Path, definitions: DefinitionSet) -> Iterator[Installation]:
    """An installation that builds in this process."""
    rules = parse_rules(None, participant_id="SYNB", participant_role="X", definitions=definitions)
    build = functools.partial(built_messages, reader=FlowFileReader(definitions), rules=rules,
                              sign=SIGNER.signed_json)
    installed = Installation(tmp_path, definitions, build, TakingPublisher())
    yield installed
    installed.pipeline.close()


def test_a_file_without_flow_instances_is_quarantined_with_its_reason(installation: Installation,
                                                                     tmp_path: Path) -> None:
    """D0280's level-1 group is optional, so a header and a trailer alone are a valid file; with no event to carry
    it is quarantined with that reason (it raised an internal error before)."""
    empty = tmp_path / "D0280001.txt"
    empty.write_text("ZHV|0000000001|D0280001|X|SYNA|X|SYNB|20211012120000||||OPER|\n"
                     "ZPT|0000000001|0||0|20211012120500|\n")
    outcome = installation.pipeline.process(installation.claim(empty))
    assert (outcome.outcome, outcome.rule) == ("quarantined", "no-instances")
    report = json.loads(outcome.final_path.with_name(outcome.final_path.name + ".error.json").read_text())
    assert report["defects"][0]["message"] == "the file holds no flow instance: there is no event to publish"
    assert installation.publisher.taken == []


class TestCheckAhead:
    """The next file's first pass, done on a thread while the one before it publishes."""

    def test_the_check_done_ahead_is_used(self, installation: Installation) -> None:
        claim = installation.claim(EXAMPLES / "D0275001.txt")
        with mock.patch("bridge.inbound.pipeline.check_file", wraps=check_file) as checks:
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


class TestHostileEntries:
    """Issue 14: whatever a dropped entry's name, links or permissions, it is archived, or quarantined with a report
    and a ledger row, and nothing outside the bridge's folders is read through a link or changed."""

    def test_a_name_of_240_bytes_is_claimed_and_published(self, installation: Installation) -> None:
        """The claim rename used to fail with ENAMETOOLONG (the daemon exited 3, at every start)."""
        dropped = installation.folders["inbound"] / ("D" * 240)
        dropped.write_bytes((EXAMPLES / "D0275001.txt").read_bytes())
        claim = installation.spool.claim(dropped)
        assert claim is not None and len(claim.original_name.encode()) <= MAX_NAME_BYTES
        assert claim.original_name.startswith("D" * 100) and "~" in claim.original_name
        outcome = installation.pipeline.process(claim)
        assert outcome.outcome == "archived" and outcome.events == 2

    def test_a_name_that_is_not_utf8_is_claimed_and_published(self, installation: Installation) -> None:
        """The ledger lookup used to raise UnicodeEncodeError (traceback, exit 1, at every start)."""
        dropped = Path(os.fsdecode(os.fsencode(installation.folders["inbound"]) + b"/D0275\xff\x01.txt"))
        dropped.write_bytes((EXAMPLES / "D0275001.txt").read_bytes())
        claim = installation.spool.claim(dropped)
        assert claim is not None
        outcome = installation.pipeline.process(claim)
        assert outcome.outcome == "archived" and outcome.events == 2
        record = installation.pipeline.ledger.get(outcome.ledger_id)
        assert record is not None and record.original_name.startswith("D0275__.txt~")
        assert installation.pipeline.ledger.get_by_claim_path(claim.path) is not None

    def test_a_foreign_undecodable_name_left_in_processing_is_settled(self, installation: Installation) -> None:
        """A pending claim of a name the bridge did not make (undecodable) reaches the ledger too."""
        foreign = Path(os.fsdecode(os.fsencode(installation.folders["processing"]) + b"/bad\xfe"))
        foreign.write_bytes(b"not a flow file\n")
        [claim] = installation.spool.pending_claims()
        outcome = installation.pipeline.process(claim)
        assert outcome.outcome == "quarantined" and outcome.final_path.name.startswith("bad_~")

    def test_a_hard_link_is_set_aside_and_the_outside_file_keeps_its_mode(self, tmp_path: Path,
                                                                          installation: Installation) -> None:
        """A hard link used to be claimed and chmodded: the outside file went from 0600 to 0640."""
        outside = tmp_path / "secret.txt"
        outside.write_bytes((EXAMPLES / "D0275001.txt").read_bytes())
        outside.chmod(0o600)
        before = outside.stat()
        os.link(outside, installation.folders["inbound"] / "D0275001.txt")
        claim = installation.spool.claim(installation.folders["inbound"] / "D0275001.txt")
        assert claim is not None
        installation.pipeline.check_ahead(claim)  # not even read ahead
        outcome = installation.pipeline.process(claim)
        assert outcome.outcome == "quarantined" and outcome.rule == "unsafe-file"
        assert "hard link" in (outcome.reason or "")
        after = outside.stat()
        assert (after.st_mode, after.st_nlink, after.st_mtime_ns) == (before.st_mode, 2, before.st_mtime_ns)
        assert not installation.pipeline.publisher.taken  # type: ignore[attr-defined]
        assert installation.pipeline.ledger.get(outcome.ledger_id).state == "quarantined"  # type: ignore[union-attr]

    def test_a_symlink_swapped_in_after_the_watchers_check_is_set_aside(self, tmp_path: Path,
                                                                         installation: Installation) -> None:
        """The watcher saw a regular file; a symbolic link replaced it before the claim: the claimed entry is
        checked again, and the link is moved, never followed (its target keeps its mode and its bytes)."""
        target = tmp_path / "target.txt"
        target.write_bytes(b"outside\n")
        target.chmod(0o600)
        dropped = installation.folders["inbound"] / "swap.txt"
        dropped.write_bytes(b"regular\n")
        dropped.unlink()
        dropped.symlink_to(target)
        claim = installation.spool.claim(dropped)
        assert claim is not None
        outcome = installation.pipeline.process(claim)
        assert outcome.outcome == "quarantined" and "not a regular file" in (outcome.reason or "")
        assert outcome.final_path.is_symlink() and os.readlink(outcome.final_path) == str(target)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"outside\n"
        report = json.loads(outcome.final_path.with_name("swap.txt.error.json").read_text())
        assert report["defects"][0]["rule"] == "unsafe-file"

    def test_an_unreadable_file_is_set_aside(self, request: pytest.FixtureRequest,
                                             definitions: DefinitionSet) -> None:
        """An unreadable file (another owner, 0600) used to raise PermissionError out of process(). Tests run as
        root, which reads everything, so the claim and the processing run in a forked child that dropped to uid/gid
        65534 (nobody), against a file root owns with mode 0600: a real EACCES (the child checks it gets one)."""
        if os.geteuid() != 0:
            pytest.skip("needs root to drop privileges in a child")
        root = Path(tempfile.mkdtemp(prefix="issue14-", dir="/tmp"))  # pytest's tmp_path is under a 0700 folder
        request.addfinalizer(lambda: shutil.rmtree(root))
        os.chmod(root, 0o755)
        folders = {name: root / name for name in ("inbound", "processing", "archive", "quarantine")}
        for folder in folders.values():
            folder.mkdir()
            os.chown(folder, 65534, 65534)
        dropped = folders["inbound"] / "D0275001.txt"
        dropped.write_bytes((EXAMPLES / "D0275001.txt").read_bytes())
        dropped.chmod(0o600)
        spool = Spool(folders["processing"], folders["archive"], folders["quarantine"])
        pipeline = InboundPipeline(reader=FlowFileReader(definitions), build=None, sign=None,  # type: ignore[arg-type]
                                   publisher=None, ledger=None, spool=spool,  # type: ignore[arg-type]
                                   rules=parse_rules(None, participant_id="SYNB", participant_role="X",
                                                     definitions=definitions))
        read_end, write_end = os.pipe()
        child = os.fork()  # not exec: the venv's interpreter may be out of nobody's reach
        if child == 0:  # pragma: no cover - the child's result travels through the pipe
            answer: object
            try:
                os.setgid(65534)
                os.setuid(65534)
                assert os.listdir(folders["inbound"]) == ["D0275001.txt"]  # the folder is open to the child ...
                try:
                    dropped.open("rb")  # ... and the file is not
                except PermissionError:
                    pipeline.ledger = Ledger(folders["processing"] / "ledger.db")
                    done = pipeline.process(spool.claim(dropped))  # type: ignore[arg-type]
                    answer = [done.outcome, done.rule, done.reason, str(done.final_path)]
                else:
                    answer = "the child can read the file: no EACCES to test"
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                answer = f"{type(exc).__name__}: {exc}"
            os.write(write_end, json.dumps(answer).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as result:
            answer = json.loads(result.read())
        os.waitpid(child, 0)
        assert isinstance(answer, list), answer
        outcome, rule, reason, final = answer
        assert (outcome, rule) == ("quarantined", "unsafe-file") and "Permission denied" in reason
        assert Path(final) == folders["quarantine"] / "D0275001.txt"
        assert stat.S_IMODE(Path(final).stat().st_mode) == 0o600 and Path(final).stat().st_uid == 0

    def test_the_ledger_keeps_the_defects_location_and_rule_not_the_quoted_value(
            self, tmp_path: Path, installation: Installation) -> None:
        """The ledger stored the first defect's quoted value in plain text even with encryption at rest on, and
        `dtn-bridge status` printed it: it keeps the location and the rule; the (encrypted) report keeps the words."""
        installation.spool.cipher = FileCipher(bytes(range(32)))
        bad = tmp_path / "D0010002.txt"
        bad.write_bytes((EXAMPLES / "D0010002.txt").read_bytes().replace(b"|3897788.8|", b"|SECRET42x|", 1))
        outcome = installation.pipeline.process(installation.claim(bad))
        assert outcome.outcome == "quarantined" and outcome.rule == "item-format"
        record = installation.pipeline.ledger.get(outcome.ledger_id)
        assert record is not None and record.reason is not None
        assert "SECRET42x" not in record.reason and record.reason.endswith(": item-format")
        assert "line" in record.reason and "item" in record.reason
        assert not [p for p in tmp_path.glob("ledger.db*") if b"SECRET42x" in p.read_bytes()]

    def test_a_link_being_set_aside_when_the_daemon_stopped_is_set_aside_at_the_restart(
            self, tmp_path: Path, installation: Installation) -> None:
        """The ledger row of an entry being set aside has no SHA-256: at the restart it is checked again, never read
        through (a claim the ledger knows is otherwise taken as checked)."""
        target = tmp_path / "target.txt"
        target.write_bytes((EXAMPLES / "D0275001.txt").read_bytes())
        (installation.folders["inbound"] / "link.txt").symlink_to(target)
        claim = installation.spool.claim(installation.folders["inbound"] / "link.txt")
        assert claim is not None
        ledger = installation.pipeline.ledger
        first = ledger.record_claimed("", claim.original_name, str(claim.path), 0)  # then the daemon was killed
        [pending] = installation.spool.pending_claims()
        outcome = installation.pipeline.process(pending)
        assert outcome.outcome == "quarantined" and outcome.rule == "unsafe-file" and outcome.ledger_id == first
        assert not installation.pipeline.publisher.taken  # type: ignore[attr-defined]
