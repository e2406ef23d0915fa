"""The inbound loop's own logic on the fakes of its ports (tests/fakes.py): the order claims are settled in, and
retries through storage and broker faults that neither lose nor duplicate a file. The daemon on the real folders,
ledger and broker is tested in tests/e2e."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.adapters.metrics import Metrics
from bridge.adapters.systemd import Heartbeat, Notifier
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.inbound import InboundPipeline
from bridge.inbound.build import built_messages
from bridge.inbound.loop import InboundLoop
from bridge.ports import Backoff
from bridge.rules import RuleSet
from bridge.rules.parse import parse_rules
from bridge.signing import Signer
from tests.conftest import EXAMPLES
from tests.fakes import FakeLedger, FakePublisher, FakeSpool, FakeWatcher
from tests.helpers import wait_until

SIGNER = Signer.generate()


class Rig:
    """An inbound loop on fakes: drop files with `drop`, run it with `running`."""

    def __init__(self, tmp_path: Path, definitions: DefinitionSet, rules: RuleSet, *, shadow: bool = False) -> None:
        self.inbound = tmp_path / "inbound"
        self.inbound.mkdir()
        self.spool = FakeSpool(tmp_path / "spool")
        self.ledger = FakeLedger()
        self.watcher = FakeWatcher()
        self.publisher = FakePublisher()
        self.statuses: list[dict[str, Any]] = []
        reader = FlowFileReader(definitions)
        pipeline = InboundPipeline(reader=reader, build=functools.partial(built_messages, reader=reader, rules=rules,
                                                                          sign=SIGNER.signed_json),
                                   sign=SIGNER.signed_json, publisher=self.publisher, ledger=self.ledger,
                                   spool=self.spool, rules=rules, shadow=shadow)
        notifier = Notifier(None)
        self.loop = InboundLoop(pipeline, self.watcher, spool=self.spool, publisher=self.publisher,
                                metrics=Metrics(), notifier=notifier, heartbeat=Heartbeat(notifier, None),
                                status=lambda **values: self.statuses.append(values), broker_labels=[],
                                shadow=shadow, reload=lambda: None)
        self.loop.backoff = Backoff(initial=0.01, maximum=0.02)  # retries at once: the faults are the fakes'

    def drop(self, example: str, name: str | None = None) -> Path:
        path = self.inbound / (name or example)
        path.write_bytes((EXAMPLES / example).read_bytes())
        return path

    @property
    def settled(self) -> list[tuple[str, str]]:
        """(original name, state) of every ledger row, in the order the files were claimed."""
        return [(record.original_name, record.state) for record in self.ledger.files.values()]

    def running(self) -> _Running:
        return _Running(self)


class _Running:
    def __init__(self, rig: Rig) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=rig.loop.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> threading.Event:
        self.thread.start()
        return self.stop

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def rules(definitions: DefinitionSet) -> RuleSet:
    return parse_rules(None, participant_id="SYNB", participant_role="X", definitions=definitions)


@pytest.fixture
def rig(tmp_path: Path, definitions: DefinitionSet, rules: RuleSet) -> Iterator[Rig]:
    yield Rig(tmp_path, definitions, rules)


def test_claims_a_crash_left_are_settled_first_in_claim_order(rig: Rig) -> None:
    for name in ("second.txt", "first.txt"):
        assert rig.spool.claim(rig.drop("D0010002.txt", name)) is not None
    rig.watcher.ready.append(rig.drop("D0275001.txt", "new.txt"))
    with running(rig):
        wait_until(lambda: len(rig.spool.archived) == 3, 10, lambda: rig.settled)
    assert rig.settled == [("second.txt", "archived"), ("first.txt", "archived"), ("new.txt", "archived")]
    assert rig.watcher.forgotten == [rig.inbound / "new.txt"]
    assert not list(rig.inbound.iterdir()) and not list(rig.spool.processing.iterdir())


def test_a_storage_fault_is_retried_without_publishing_again(rig: Rig) -> None:
    """The archive move fails twice after every event was confirmed: only the move is retried."""
    rig.spool.fail("archive", 2)
    rig.watcher.ready.append(rig.drop("D0275001.txt"))
    with running(rig):
        wait_until(lambda: rig.settled == [("D0275001.txt", "archived")], 10, lambda: rig.settled)
    assert rig.spool.calls["archive"] == 3 and len(rig.spool.archived) == 1
    assert rig.publisher.units == 2 and len(rig.publisher.published) == 3  # 2 events and the manifest, once
    assert any("failed archive on purpose" in str(status.get("last_error")) for status in rig.statuses)


def test_a_broker_lost_mid_file_is_retried_with_the_same_ids(rig: Rig) -> None:
    rig.publisher.lose_connection(after=1)
    rig.watcher.ready.append(rig.drop("D0275001.txt"))
    with running(rig):
        wait_until(lambda: rig.settled == [("D0275001.txt", "archived")], 10, lambda: rig.settled)
    ids = [message.message_id for message in rig.publisher.published]
    assert len(set(ids)) == 3 and len(ids) == 4  # the message handed over before the loss comes again, same id
    assert rig.publisher.connected and len(rig.spool.archived) == 1


def test_a_defective_file_is_quarantined_with_its_report(rig: Rig) -> None:
    path = rig.drop("D0010002.txt", "broken.txt")
    path.write_bytes(path.read_bytes().replace(b"ZPT|", b"ZPX|"))
    rig.watcher.ready.append(path)
    with running(rig):
        wait_until(lambda: rig.spool.quarantined, 10, lambda: rig.settled)
    assert rig.settled == [("broken.txt", "quarantined")] and rig.publisher.published == []
    [final] = rig.spool.quarantined
    assert final.with_name(final.name + ".error.json").exists()


def test_shadow_mode_copies_and_leaves_the_dropped_file(tmp_path: Path, definitions: DefinitionSet,
                                                        rules: RuleSet) -> None:
    shadow = Rig(tmp_path, definitions, rules, shadow=True)
    path = shadow.drop("D0275001.txt")
    shadow.watcher.ready.append(path)
    with running(shadow):
        wait_until(lambda: shadow.spool.archived, 10, lambda: shadow.settled)
        shadow.watcher.ready.append(path)  # a rescan finds it again, unchanged: not taken twice
        wait_until(lambda: shadow.spool.calls["claim_copy"] == 2, 10)
    assert path.read_bytes() == (EXAMPLES / "D0275001.txt").read_bytes()
    assert shadow.settled == [("D0275001.txt", "archived")] and shadow.publisher.published == []
    assert shadow.spool.calls["claim"] == 0


def running(rig: Rig) -> _Running:
    return rig.running()
