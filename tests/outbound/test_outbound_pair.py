"""Two outbound writers of an active/standby pair (two ledgers, one outbound folder, one shared state folder): file
identifiers never repeat across them, and what one wrote the other never writes again, even when the first died
between recording a file and finishing it. The SIGKILL of a whole daemon is tests/faults/test_pair_kill.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.adapters.ledger import Ledger
from bridge.adapters.pair import SharedOutbound, SharedSession
from bridge.adapters.spool import FolderOutbox
from bridge.config import OutboundConfig
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.reader import FlowFileReader
from bridge.outbound import MessageChecker, OutboundWriter
from bridge.signing import Signer
from tests.conftest import EXAMPLES
from tests.outbound.outbound_helpers import FakeClock, numbered_events, source_file, visible_files
from tests.outbound.test_outbound_writer import ready, verified


class Died(BaseException):
    """Stands for the process's death at a point of the protocol (not an Exception: nothing handles it)."""


@pytest.fixture
def ledgers(tmp_path: Path) -> Iterator[tuple[Ledger, Ledger]]:
    with Ledger(tmp_path / "a.sqlite3") as a, Ledger(tmp_path / "b.sqlite3") as b:
        yield a, b


@pytest.fixture
def pair(definitions: DefinitionSet, ledgers: tuple[Ledger, Ledger], config: OutboundConfig, tmp_path: Path,
         clock: FakeClock) -> tuple[OutboundWriter, OutboundWriter]:
    def writer(ledger: Ledger) -> OutboundWriter:
        shared = SharedOutbound(tmp_path / "shared", config.folder)
        return OutboundWriter(definitions, ledger, config, outbox=FolderOutbox(config.folder, config.file_mode),
                              clock=clock, shared=shared)

    return writer(ledgers[0]), writer(ledgers[1])


def test_file_identifiers_never_repeat_across_the_pair(pair: tuple[OutboundWriter, OutboundWriter],
                                                       checker: MessageChecker, signer: Signer,
                                                       template: dict[str, Any], ledgers: tuple[Ledger, Ledger],
                                                       out_dir: Path) -> None:
    a, b = pair
    ledgers[0].allocate_file_identifier("SYNA")  # a ran alone before: its own counter is at 1
    numbers = []
    for n, writer in enumerate([a, b, b, a, b]):
        record = writer.write(ready("batch", verified(checker, signer, numbered_events(template, 2, start=10 * n))))
        assert record is not None
        numbers.append(record.file_identifier)
    assert numbers == ["0000000002", "0000000003", "0000000004", "0000000005", "0000000006"]
    assert len(visible_files(out_dir)) == 5
    # each daemon's own counter follows the pair's whenever it takes the pair's lock (at least at its start):
    # alone again, neither goes back
    a.recover()
    b.recover()
    assert [ledger.allocate_file_identifier("SYNA") for ledger in ledgers] == [7, 7]


def test_the_standby_never_writes_again_what_the_active_one_wrote(
        pair: tuple[OutboundWriter, OutboundWriter], checker: MessageChecker, signer: Signer, reader: FlowFileReader,
        out_dir: Path) -> None:
    a, b = pair
    source = source_file(EXAMPLES / "D0010002.txt", reader)
    items = verified(checker, signer, source.events)
    assert a.write(ready("original", items)) is not None
    keys = {item.key for item in items}
    assert b.written(keys) == set()  # not refreshed: its own ledger only
    assert b.written(keys, refresh=True) == keys  # redelivered: it asks the pair first
    assert b.write(ready("original", items)) is None
    assert [path.read_bytes() for path in visible_files(out_dir)] == [source.path.read_bytes()]


def test_killed_after_the_link_the_standby_recognises_the_file(
        pair: tuple[OutboundWriter, OutboundWriter], checker: MessageChecker, signer: Signer, reader: FlowFileReader,
        out_dir: Path, monkeypatch: pytest.MonkeyPatch, ledgers: tuple[Ledger, Ledger]) -> None:
    a, b = pair
    source = source_file(EXAMPLES / "D0010002.txt", reader)
    items = verified(checker, signer, source.events)

    def die(_session: SharedSession, _number: int) -> None:
        raise Died

    with monkeypatch.context() as patch:
        patch.setattr(SharedSession, "finish", die)
        with pytest.raises(Died):
            a.write(ready("original", items))
    assert len(visible_files(out_dir)) == 1 and ledgers[0].pending_outbound_files()
    assert b.write(ready("original", items)) is None  # the pending record: the final name holds its bytes
    assert [path.read_bytes() for path in visible_files(out_dir)] == [source.path.read_bytes()]
    recovery = a.recover()  # the dead one restarts: its own ledger agrees
    assert (recovery.finished, recovery.rolled_back) == (1, 0)


def test_killed_before_the_link_the_standby_writes_the_file(
        pair: tuple[OutboundWriter, OutboundWriter], checker: MessageChecker, signer: Signer, reader: FlowFileReader,
        out_dir: Path, monkeypatch: pytest.MonkeyPatch, ledgers: tuple[Ledger, Ledger]) -> None:
    a, b = pair
    source = source_file(EXAMPLES / "D0010002.txt", reader)
    items = verified(checker, signer, source.events)

    def die(_outbox: FolderOutbox, _tmp: Path, _path: Path) -> bool:
        raise Died

    with monkeypatch.context() as patch:
        patch.setattr(FolderOutbox, "link", die)
        with pytest.raises(Died):
            a.write(ready("original", items))
    assert visible_files(out_dir) == []
    assert b.written({item.key for item in items}, refresh=True) == set()  # the record is settled: not written
    record = b.write(ready("original", items))
    assert record is not None and record.path.read_bytes() == source.path.read_bytes()
    assert [path.name for path in out_dir.iterdir()] == [record.path.name]  # no temporary file left
    assert a.recover().rolled_back == 0  # a rolled its own ledger back as it failed
