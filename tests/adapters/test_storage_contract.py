"""The storage ports' contract: the same cases against the fakes of tests/fakes.py and the real adapters (the
SQLite ledger, the spool's folders, the FolderOutbox), so that a chain tested on the fakes meets the same
behaviour in production."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from bridge.adapters.ledger import Ledger
from bridge.adapters.spool import FolderOutbox, Spool
from bridge.errors import StorageError
from bridge.ports import InboundLedger, OutboundFileDraft, OutboundLedger, Outbox
from bridge.ports import Spool as SpoolPort
from tests.fakes import FakeLedger, FakeOutbox, FakeSpool

SYNA = "urn:mpid:SYNA"


class AnyLedger(InboundLedger, OutboundLedger):
    """Both ledger ports, as the daemon's one ledger object has them."""


@pytest.fixture(params=["fake", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyLedger]:
    if request.param == "fake":
        yield FakeLedger()
        return
    with Ledger(tmp_path / "ledger.sqlite3") as opened:
        yield opened


@pytest.fixture(params=["fake", "folders"])
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> SpoolPort:
    if request.param == "fake":
        return FakeSpool(tmp_path / "spool")
    root = tmp_path / "spool"
    for name in ("processing", "archive", "quarantine"):
        (root / name).mkdir(parents=True)
    return Spool(root / "processing", root / "archive", root / "quarantine")


@pytest.fixture(params=["fake", "folder"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Outbox:
    folder = tmp_path / "outbound"
    folder.mkdir()
    return FakeOutbox(folder) if request.param == "fake" else FolderOutbox(folder)


@pytest.fixture
def inbound(tmp_path: Path) -> Path:
    folder = tmp_path / "inbound"
    folder.mkdir()
    return folder


def draft(folder: Path, name: str) -> OutboundFileDraft:
    return OutboundFileDraft(kind="batch", path=folder / name, tmp_path=folder / f".{name}.tmp", sha256="ab" * 32,
                             size=10, flow="D0010002", from_participant="SYNA", to_participant="SYNB",
                             file_identifier="0000000001", test_flag="OPER")


# ------------------------------------------------------------------------------------------------------ the ledger


class TestLedgerContract:
    def test_a_claimed_file_is_found_by_its_claim_path_latest_first(self, ledger: AnyLedger) -> None:
        first = ledger.record_claimed("aa" * 32, "a.txt", "/spool/processing/1-a.txt", 10)
        second = ledger.record_claimed("bb" * 32, "a.txt", "/spool/processing/1-a.txt", 11)
        assert second > first
        record = ledger.get_by_claim_path(Path("/spool/processing/1-a.txt"))
        assert record is not None and (record.id, record.sha256, record.size, record.state) == \
            (second, "bb" * 32, 11, "claimed")
        assert ledger.get_by_claim_path("/spool/processing/other") is None

    def test_states_go_forward_and_a_final_state_is_never_left(self, ledger: AnyLedger) -> None:
        file_id = ledger.record_claimed("aa" * 32, "a.txt", "/p/a", 10)
        ledger.record_parsed(file_id, file_identifier="F1", flow="D0010002", from_participant="SYNA",
                             to_participant="SYNB", instances=3)
        ledger.record_published(file_id, events=3, first_event_id="e1", last_event_id="e3")
        ledger.record_published(file_id, events=3, first_event_id="e1", last_event_id="e3")  # a restart redoes it
        ledger.record_archived(file_id, "/archive/a")
        record = ledger.get_by_claim_path("/p/a")
        assert record is not None and (record.state, record.events, record.flow, record.final_path) == \
            ("archived", 3, "D0010002", Path("/archive/a"))
        with pytest.raises(StorageError):
            ledger.record_quarantined(file_id, "/q/a", "too late")
        with pytest.raises(StorageError):
            ledger.record_archived(file_id + 100, "/archive/nothing")

    def test_only_published_or_archived_content_is_a_duplicate(self, ledger: AnyLedger) -> None:
        digest = "cc" * 32
        quarantined = ledger.record_claimed(digest, "q.txt", "/p/q", 1)
        ledger.record_quarantined(quarantined, "/q/q", "bad")
        assert ledger.find_completed_by_sha256(digest) is None
        first = ledger.record_claimed(digest, "a.txt", "/p/a", 1)
        ledger.record_archived(first, "/archive/a")  # a skipped duplicate counts too
        later = ledger.record_claimed(digest, "b.txt", "/p/b", 1)
        ledger.record_parsed(later, file_identifier="F", flow="D0010002", from_participant="SYNA",
                             to_participant="SYNB", instances=1)
        ledger.record_published(later, events=1, first_event_id="e", last_event_id="e")
        found = ledger.find_completed_by_sha256(digest)
        assert found is not None and found.id == first

    def test_an_event_never_reaches_two_files(self, ledger: AnyLedger, tmp_path: Path) -> None:
        one = ledger.begin_outbound_file(draft(tmp_path, "A.usr"), [(SYNA, "e1"), (SYNA, "e2")])
        assert ledger.seen_events([(SYNA, "e1"), (SYNA, "e3"), ("urn:mpid:EVIL", "e2")]) == {(SYNA, "e1")}
        with pytest.raises(StorageError):
            ledger.begin_outbound_file(draft(tmp_path, "B.usr"), [(SYNA, "e3"), (SYNA, "e2")])
        assert ledger.seen_events([(SYNA, "e3")]) == set()  # nothing of the refused file was recorded
        assert [record.id for record in ledger.pending_outbound_files()] == [one]
        found = ledger.find_outbound_by_event((SYNA, "e2"))
        assert found is not None and (found.id, found.state, found.events) == (one, "pending", 2)

    def test_finish_writes_and_abandon_frees_the_events(self, ledger: AnyLedger, tmp_path: Path) -> None:
        kept = ledger.begin_outbound_file(draft(tmp_path, "A.usr"), [(SYNA, "e1")])
        dropped = ledger.begin_outbound_file(draft(tmp_path, "B.usr"), [(SYNA, "e2")])
        ledger.finish_outbound_file(kept)
        ledger.abandon_outbound_file(dropped)
        assert ledger.pending_outbound_files() == []
        written = ledger.outbound_file(kept)
        assert written is not None and written.state == "written" and written.written_at is not None
        assert ledger.outbound_file(dropped) is None
        assert ledger.seen_events([(SYNA, "e1"), (SYNA, "e2")]) == {(SYNA, "e1")}
        again = ledger.begin_outbound_file(draft(tmp_path, "B.1.usr"), [(SYNA, "e2")])  # free again
        assert ledger.seen_events([(SYNA, "e2")]) == {(SYNA, "e2")}
        assert [record.id for record in ledger.pending_outbound_files()] == [again]

    def test_file_identifiers_count_per_sender_and_never_repeat(self, ledger: AnyLedger) -> None:
        assert [ledger.allocate_file_identifier("SYNA") for _ in range(3)] == [1, 2, 3]
        assert ledger.allocate_file_identifier("SYNB") == 1
        assert ledger.allocate_file_identifier("SYNA") == 4

    def test_a_pair_raises_identifiers_never_lowers_them(self, ledger: AnyLedger) -> None:
        ledger.raise_file_identifier("SYNA", 7)
        ledger.raise_file_identifier("SYNA", 3)  # the pair's counter is behind ours: ours stands
        assert ledger.allocate_file_identifier("SYNA") == 8
        ledger.raise_file_identifier("SYNB", 2)
        assert ledger.allocate_file_identifier("SYNB") == 3

    def test_events_the_other_daemon_wrote_are_seen_and_never_written_again(self, ledger: AnyLedger,
                                                                            tmp_path: Path) -> None:
        assert ledger.mark_events_written([(SYNA, "e1"), (SYNA, "e2"), (SYNA, "e1")], tmp_path / "A.usr") == 2
        assert ledger.mark_events_written([(SYNA, "e2"), (SYNA, "e3")], tmp_path / "B.usr") == 1
        assert ledger.seen_events([(SYNA, "e1"), (SYNA, "e3"), (SYNA, "e4")]) == {(SYNA, "e1"), (SYNA, "e3")}
        with pytest.raises(StorageError):
            ledger.begin_outbound_file(draft(tmp_path, "C.usr"), [(SYNA, "e4"), (SYNA, "e1")])
        assert ledger.seen_events([(SYNA, "e4")]) == set()

    def test_manifests_are_kept_by_their_first_event(self, ledger: AnyLedger, tmp_path: Path) -> None:
        assert ledger.outbound_manifest_sha256((SYNA, "e1")) is None
        ledger.record_outbound_manifest((SYNA, "e1"), "m1", "11" * 32)
        ledger.record_outbound_manifest((SYNA, "e1"), "m2", "22" * 32)  # a later one replaces it
        assert ledger.outbound_manifest_sha256((SYNA, "e1")) == "22" * 32
        assert ledger.outbound_manifest_sha256(("urn:mpid:EVIL", "e1")) is None
        file_id = ledger.begin_outbound_file(draft(tmp_path, "A.usr"), [(SYNA, "e1")])
        ledger.record_manifest_check(file_id, "22" * 32, False)
        record = ledger.outbound_file(file_id)
        assert record is not None and (record.manifest_sha256, record.manifest_match) == ("22" * 32, False)


# ------------------------------------------------------------------------------------------------------- the spool


class TestSpoolContract:
    def test_a_file_is_claimed_once(self, spool: SpoolPort, inbound: Path) -> None:
        (inbound / "a.txt").write_bytes(b"one")
        claim = spool.claim(inbound / "a.txt")
        assert claim is not None and claim.original_name == "a.txt" and claim.path.read_bytes() == b"one"
        assert not (inbound / "a.txt").exists()
        assert spool.claim(inbound / "a.txt") is None  # gone: another instance took it
        assert spool.sha256(claim) == hashlib.sha256(b"one").hexdigest()
        assert spool.unsafe(claim) is None

    def test_pending_claims_come_back_in_claim_order(self, spool: SpoolPort, inbound: Path) -> None:
        for name in ("b.txt", "a.txt", "c.txt"):
            (inbound / name).write_bytes(name.encode())
            assert spool.claim(inbound / name) is not None
        assert [claim.original_name for claim in spool.pending_claims()] == ["b.txt", "a.txt", "c.txt"]

    def test_archive_never_overwrites(self, spool: SpoolPort, inbound: Path) -> None:
        finals = []
        for content in (b"first", b"second"):
            (inbound / "a.txt").write_bytes(content)
            claim = spool.claim(inbound / "a.txt")
            assert claim is not None
            finals.append(spool.archive(claim, date(2026, 12, 1)))
            assert not claim.path.exists()
        assert finals[0] != finals[1] and finals[0].name == "a.txt"
        assert [final.read_bytes() for final in finals] == [b"first", b"second"]
        assert spool.pending_claims() == []

    def test_quarantine_keeps_the_report_beside_the_file(self, spool: SpoolPort, inbound: Path) -> None:
        finals = []
        for reason in ("bad", "worse"):
            (inbound / "a.txt").write_bytes(reason.encode())
            claim = spool.claim(inbound / "a.txt")
            assert claim is not None
            finals.append(spool.quarantine(claim, {"reason": reason}))
        assert finals[0] != finals[1]
        for final, reason in zip(finals, ("bad", "worse"), strict=True):
            assert final.read_bytes() == reason.encode()
            assert json.loads(final.with_name(final.name + ".error.json").read_text())["reason"] == reason

    def test_an_unsafe_entry_is_set_aside_unopened(self, spool: SpoolPort, inbound: Path, tmp_path: Path) -> None:
        secret = tmp_path / "secret"
        secret.write_bytes(b"not ours")
        (inbound / "link.txt").symlink_to(secret)
        claim = spool.claim(inbound / "link.txt")
        assert claim is not None and spool.unsafe(claim) is not None
        final = spool.set_aside(claim, {"reason": "unsafe"})
        assert final.is_symlink() and secret.read_bytes() == b"not ours"
        assert json.loads(final.with_name(final.name + ".error.json").read_text())["reason"] == "unsafe"

    def test_a_shadow_claim_copies_and_leaves_the_file(self, spool: SpoolPort, inbound: Path) -> None:
        dropped = inbound / "a.txt"
        dropped.write_bytes(b"one")
        claim = spool.claim_copy(dropped)
        assert claim is not None and claim.path.read_bytes() == b"one" and dropped.read_bytes() == b"one"
        assert spool.claim_copy(dropped) is None  # unchanged: seen already
        dropped.write_bytes(b"changed")
        os.utime(dropped, ns=(1, 1))
        again = spool.claim_copy(dropped)
        assert again is not None and again.path.read_bytes() == b"changed"
        assert spool.claim_copy(inbound / "gone.txt") is None


# ------------------------------------------------------------------------------------------------------ the outbox


class TestOutboxContract:
    def test_a_name_is_written_once(self, outbox: Outbox) -> None:
        tmp = outbox.folder / ".a.tmp"
        assert not outbox.taken(tmp) and outbox.sha256(tmp) is None
        outbox.write_synced(tmp, b"data")
        assert outbox.taken(tmp) and outbox.sha256(tmp) == hashlib.sha256(b"data").hexdigest()
        with pytest.raises(StorageError):
            outbox.write_synced(tmp, b"other")
        assert outbox.sha256(tmp) == hashlib.sha256(b"data").hexdigest()

    def test_a_link_never_overwrites(self, outbox: Outbox) -> None:
        tmp, final = outbox.folder / ".a.tmp", outbox.folder / "A.usr"
        outbox.write_synced(tmp, b"first")
        assert outbox.link(tmp, final)
        outbox.remove(tmp)
        outbox.sync()
        assert not outbox.taken(tmp) and outbox.sha256(final) == hashlib.sha256(b"first").hexdigest()
        outbox.write_synced(tmp, b"second")
        assert not outbox.link(tmp, final)
        assert outbox.sha256(final) == hashlib.sha256(b"first").hexdigest()

    def test_removing_a_missing_name_is_no_error(self, outbox: Outbox) -> None:
        outbox.remove(outbox.folder / ".never.tmp")
        with pytest.raises(StorageError):
            outbox.link(outbox.folder / ".never.tmp", outbox.folder / "N.usr")
