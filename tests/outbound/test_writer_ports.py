"""The outbound writer's exactly-once protocol on the fakes of its ports (tests/fakes.py: FakeLedger, FakeOutbox):
the same bytes as on the real adapters, and every storage fault of the protocol's steps injected on purpose, which
the real folder cannot be made to do on demand."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.adapters.ledger import Ledger
from bridge.adapters.spool import FolderOutbox
from bridge.config import OutboundConfig
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.errors import StorageError
from bridge.outbound import CheckedEvent, Held, MessageChecker, OutboundWriter, ReadyFile
from bridge.ports import Delivery, OutboundFileDraft
from bridge.signing import Signer
from tests.conftest import EXAMPLES
from tests.fakes import FakeLedger, FakeOutbox
from tests.outbound.outbound_helpers import FakeClock, numbered_events, source_file

SYNA = "urn:mpid:SYNA"


@pytest.fixture
def fake_ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def outbox(out_dir: Path) -> FakeOutbox:
    return FakeOutbox(out_dir)


@pytest.fixture
def writer(definitions: DefinitionSet, fake_ledger: FakeLedger, outbox: FakeOutbox, config: OutboundConfig,
           clock: FakeClock) -> OutboundWriter:
    return OutboundWriter(definitions, fake_ledger, config, outbox=outbox, clock=clock)


def ready(kind: str, checker: MessageChecker, signer: Signer, events: list[dict[str, Any]]) -> ReadyFile:
    items = []
    for n, event in enumerate(events, 1):
        item = checker.check(orjson.dumps(signer.sign(event))).outcome
        assert isinstance(item, CheckedEvent)
        items.append(Held(item, Delivery(b"", {}, None, "k", False, n), 0.0))
    return ReadyFile(kind, tuple(items), "test")


def test_the_same_files_as_on_the_real_folder_and_ledger(
    writer: OutboundWriter, outbox: FakeOutbox, definitions: DefinitionSet, checker: MessageChecker, signer: Signer,
    template: dict[str, Any], reader: FlowFileReader, config: OutboundConfig, clock: FakeClock, out_dir: Path
) -> None:
    """A batch and a reproduced original: the fakes get exactly the names and bytes the real adapters get."""
    original = source_file(EXAMPLES / "D0030001.txt", reader).events
    batch = numbered_events(template, 3)
    for events, kind in ((batch, "batch"), (original, "original")):
        assert writer.write(ready(kind, checker, signer, events))
    with Ledger(out_dir.parent / "ledger.sqlite3") as ledger:
        real = OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(out_dir), clock=clock)
        for events, kind in ((batch, "batch"), (original, "original")):
            assert real.write(ready(kind, checker, signer, events))
    on_disk = {path.name: path.read_bytes() for path in out_dir.iterdir()}
    assert outbox.visible() == on_disk and len(on_disk) == 2
    assert outbox.syncs == 2


@pytest.mark.parametrize("step", ["write_synced", "link"])
def test_a_fault_before_the_link_rolls_the_file_back(
    writer: OutboundWriter, outbox: FakeOutbox, fake_ledger: FakeLedger, checker: MessageChecker, signer: Signer,
    template: dict[str, Any], step: str
) -> None:
    """Nothing reached its final name: the record and its events are forgotten (they will be written again), no
    temporary file is left, and the next try writes the file."""
    events = numbered_events(template, 2)
    outbox.fail(step)
    with pytest.raises(StorageError):
        writer.write(ready("batch", checker, signer, events))
    assert outbox.files == {} and fake_ledger.outbound == {} and fake_ledger.written == {}
    record = writer.write(ready("batch", checker, signer, events))
    assert record is not None and record.state == "written" and list(outbox.visible()) == [record.path.name]


@pytest.mark.parametrize("step", ["remove", "sync"])
def test_a_fault_after_the_link_leaves_it_to_recovery(
    writer: OutboundWriter, outbox: FakeOutbox, fake_ledger: FakeLedger, checker: MessageChecker, signer: Signer,
    template: dict[str, Any], step: str
) -> None:
    """The file is in place but not known to be durable: the record stays pending (nothing is acked), and
    recovery finds the recorded bytes under the final name and finishes it; its events are never written twice."""
    events = numbered_events(template, 2)
    outbox.fail(step)
    with pytest.raises(StorageError):
        writer.write(ready("batch", checker, signer, events))
    [pending] = fake_ledger.pending_outbound_files()
    recovery = writer.recover()
    assert (recovery.finished, recovery.rolled_back) == (1, 0)
    assert fake_ledger.outbound[pending.id].state == "written" and outbox.visible() == {
        pending.path.name: outbox.files[pending.path]}
    assert writer.write(ready("batch", checker, signer, events)) is None  # already written


def test_a_name_taken_meanwhile_moves_on_to_the_next(
    writer: OutboundWriter, outbox: FakeOutbox, fake_ledger: FakeLedger, checker: MessageChecker, signer: Signer,
    template: dict[str, Any], out_dir: Path
) -> None:
    """Another writer takes the final name between the check and the link: that record is rolled back and the
    file goes under the next free name, which its record then names."""
    real_link = outbox.link
    taken: list[Path] = []

    def link_after_a_race(tmp: Path, path: Path) -> bool:
        if not taken:
            taken.append(path)
            outbox.files[path] = b"the other writer's file"
        return real_link(tmp, path)

    outbox.link = link_after_a_race  # type: ignore[method-assign]
    record = writer.write(ready("batch", checker, signer, numbered_events(template, 1)))
    assert record is not None and record.path.name == "D0010002_SYNA_0000000001.1.usr"
    assert outbox.files[taken[0]] == b"the other writer's file"
    assert [file.path for file in fake_ledger.outbound.values()] == [record.path]


def test_recovery_rolls_back_what_did_not_arrive_and_goes_on(
    writer: OutboundWriter, outbox: FakeOutbox, fake_ledger: FakeLedger, out_dir: Path
) -> None:
    """Of two pending files, the one whose final name holds other bytes is rolled back (its events free again),
    the one holding its recorded bytes is finished; a failed read rolls back rather than stopping the start."""
    def draft(name: str, data: bytes) -> OutboundFileDraft:
        return OutboundFileDraft(kind="batch", path=out_dir / name, tmp_path=out_dir / f".{name}.tmp",
                                 sha256=hashlib.sha256(data).hexdigest(), size=len(data), flow="D0010002",
                                 from_participant="SYNA", to_participant="SYNB", file_identifier="1",
                                 test_flag="OPER")

    lost = fake_ledger.begin_outbound_file(draft("A.usr", b"a"), [(SYNA, "a")])
    kept = fake_ledger.begin_outbound_file(draft("B.usr", b"b"), [(SYNA, "b")])
    unreadable = fake_ledger.begin_outbound_file(draft("C.usr", b"c"), [(SYNA, "c")])
    outbox.files[out_dir / "A.usr"] = b"half"
    outbox.files[out_dir / "B.usr"] = b"b"
    outbox.files[out_dir / ".A.usr.tmp"] = b"half"
    real_sha256 = outbox.sha256
    outbox.sha256 = lambda path: (_ for _ in ()).throw(StorageError("unreadable")) if path.name == "C.usr" \
        else real_sha256(path)  # type: ignore[method-assign]
    recovery = writer.recover()
    assert (recovery.finished, recovery.rolled_back) == (1, 2)
    assert set(fake_ledger.outbound) == {kept} and fake_ledger.seen_events([(SYNA, "a"), (SYNA, "c")]) == set()
    assert out_dir / ".A.usr.tmp" not in outbox.files and lost != unreadable
