"""Tests of bridge.adapters.ledger: the file records, duplicate detection, summary, outbound dedup, migrations."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bridge.adapters.ledger import SCHEMA_VERSION, Ledger, OutboundFileDraft
from bridge.adapters.ledger.connection import MIGRATIONS
from bridge.errors import StorageError


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2024, 3, 7, 10, 0, tzinfo=UTC))


@pytest.fixture
def ledger(tmp_path: Path, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite3", clock=clock) as opened:
        yield opened


def claim(ledger: Ledger, sha: str = "aa", name: str = "D0010002.usr") -> int:
    return ledger.record_claimed(sha, name, Path(f"/p/1-1-{name}-{sha}"), 42)


def parse(ledger: Ledger, file_id: int) -> None:
    ledger.record_parsed(
        file_id,
        file_identifier="F1",
        flow="D0010002",
        from_participant="ABCD",
        to_participant="DTNB",
        instances=3,
    )


class TestRoundTrip:
    def test_lifecycle(self, ledger: Ledger, clock: FakeClock) -> None:
        """Claimed -> parsed -> published -> archived, every column read back."""
        file_id = ledger.record_claimed("ab" * 32, "D0010002.usr", Path("/p/1-1-D0010002.usr"), 123)
        record = ledger.get(file_id)
        assert record and record.state == "claimed" and record.size == 123
        assert record.claim_path == Path("/p/1-1-D0010002.usr") and record.claimed_at == clock.now

        clock.advance(seconds=1)
        parse(ledger, file_id)
        clock.advance(seconds=1)
        ledger.record_published(file_id, events=3, first_event_id="e1", last_event_id="e3")
        clock.advance(seconds=1)
        ledger.record_archived(file_id, Path("/a/2024/03/07/D0010002.usr"))

        record = ledger.get_by_claim_path(Path("/p/1-1-D0010002.usr"))
        assert record is not None
        assert record.state == "archived"
        assert (record.file_identifier, record.flow, record.from_participant, record.to_participant) == (
            "F1",
            "D0010002",
            "ABCD",
            "DTNB",
        )
        assert (record.instances, record.events, record.first_event_id, record.last_event_id) == (
            3,
            3,
            "e1",
            "e3",
        )
        assert record.final_path == Path("/a/2024/03/07/D0010002.usr")
        assert record.published_at == clock.now - timedelta(seconds=1)
        assert record.archived_at == clock.now == record.updated_at
        assert record.claimed_at.tzinfo is not None

    def test_quarantine(self, ledger: Ledger) -> None:
        """A quarantined record keeps its path and reason."""
        file_id = claim(ledger)
        ledger.record_quarantined(file_id, Path("/q/D0010002.usr"), "bad trailer")
        record = ledger.get(file_id)
        assert record and record.state == "quarantined" and record.reason == "bad trailer"
        assert record.final_path == Path("/q/D0010002.usr") and record.quarantined_at is not None

    def test_persists_across_reopen(self, tmp_path: Path, clock: FakeClock) -> None:
        """Committed records survive closing and reopening the file."""
        with Ledger(tmp_path / "l.sqlite3", clock=clock) as ledger:
            file_id = claim(ledger)
        with Ledger(tmp_path / "l.sqlite3", clock=clock) as ledger:
            record = ledger.get(file_id)
            assert record and record.original_name == "D0010002.usr"

    def test_get_by_claim_path_returns_latest(self, ledger: Ledger) -> None:
        """If a claim path was recorded twice, the latest record wins; unknown paths give None."""
        first = ledger.record_claimed("a", "x", "/p/x", 1)
        second = ledger.record_claimed("a", "x", "/p/x", 1)
        record = ledger.get_by_claim_path("/p/x")
        assert record and record.id == second != first
        assert ledger.get_by_claim_path("/p/none") is None
        assert ledger.get(999) is None

    def test_restart_may_repeat_a_step(self, ledger: Ledger) -> None:
        """A restart redoing parse or publish is allowed."""
        file_id = claim(ledger)
        parse(ledger, file_id)
        parse(ledger, file_id)
        ledger.record_published(file_id, events=3, first_event_id="a", last_event_id="c")
        ledger.record_published(file_id, events=3, first_event_id="a", last_event_id="c")
        record = ledger.get(file_id)
        assert record and record.state == "published"

    def test_final_states_are_final(self, ledger: Ledger) -> None:
        """An archived file cannot be parsed again; an unknown id is an error."""
        file_id = claim(ledger)
        ledger.record_archived(file_id, "/a/x")
        with pytest.raises(StorageError, match="archived to parsed"):
            parse(ledger, file_id)
        with pytest.raises(StorageError, match="no file with id"):
            ledger.record_archived(12345, "/a/y")
        record = ledger.get(file_id)
        assert record and record.state == "archived"


class TestDuplicates:
    def test_published_content_is_found(self, ledger: Ledger) -> None:
        """A file with the same sha256 that was published is a duplicate."""
        first = claim(ledger, sha="cafe")
        parse(ledger, first)
        ledger.record_published(first, events=3, first_event_id="a", last_event_id="c")
        second = claim(ledger, sha="cafe")
        found = ledger.find_completed_by_sha256("cafe")
        assert found and found.id == first != second

    def test_archived_content_is_found_earliest_first(self, ledger: Ledger) -> None:
        """Archived files count too, and the first (original) one is returned."""
        ids = []
        for _ in range(2):
            file_id = claim(ledger, sha="beef")
            ledger.record_archived(file_id, "/a/x")
            ids.append(file_id)
        found = ledger.find_completed_by_sha256("beef")
        assert found and found.id == ids[0]

    @pytest.mark.parametrize("state", ["claimed", "parsed", "quarantined"])
    def test_unfinished_or_rejected_content_is_not_a_duplicate(self, ledger: Ledger, state: str) -> None:
        """Content that was never published (claimed, parsed, quarantined) is not a duplicate."""
        file_id = claim(ledger, sha="f00d")
        if state == "parsed":
            parse(ledger, file_id)
        if state == "quarantined":
            ledger.record_quarantined(file_id, "/q/x", "bad")
        assert ledger.find_completed_by_sha256("f00d") is None
        assert ledger.find_completed_by_sha256("other") is None


class TestSummary:
    def test_counts(self, ledger: Ledger, clock: FakeClock) -> None:
        """The summary counts pending, in-flight, today's published/archived, and quarantined files."""
        yesterday_id = claim(ledger, sha="y")
        parse(ledger, yesterday_id)
        ledger.record_published(yesterday_id, events=1, first_event_id="a", last_event_id="a")
        ledger.record_archived(yesterday_id, "/a/y")
        ledger.record_quarantined(claim(ledger, sha="q0"), "/q/0", "old reason")
        clock.advance(days=1)

        claim(ledger, sha="c1")
        claim(ledger, sha="c2")
        parse(ledger, claim(ledger, sha="p1"))
        published = claim(ledger, sha="pub")
        parse(ledger, published)
        ledger.record_published(published, events=3, first_event_id="a", last_event_id="c")
        done = claim(ledger, sha="done")
        parse(ledger, done)
        ledger.record_published(done, events=3, first_event_id="a", last_event_id="c")
        ledger.record_archived(done, "/a/done")
        clock.advance(minutes=1)
        ledger.record_quarantined(claim(ledger, sha="q1"), "/q/1", "new reason")

        summary = ledger.summary(date(2024, 3, 8))
        assert summary.claimed == 2
        assert summary.in_flight == 1
        assert summary.published_today == 2  # pub, and done (published then archived)
        assert summary.archived_today == 1
        assert summary.quarantined_today == 1
        assert summary.quarantined_total == 2
        assert [q.reason for q in summary.recent_quarantined] == ["new reason", "old reason"]
        assert summary.recent_quarantined[0].path == Path("/q/1")

        earlier = ledger.summary(date(2024, 3, 7))
        assert (earlier.published_today, earlier.archived_today, earlier.quarantined_today) == (1, 1, 1)

    def test_empty(self, ledger: Ledger) -> None:
        """An empty ledger summarises to zeros."""
        summary = ledger.summary(date(2024, 1, 1))
        assert (summary.claimed, summary.in_flight, summary.published_today, summary.quarantined_total) == (
            0,
            0,
            0,
            0,
        )
        assert summary.recent_quarantined == ()

    def test_recent_quarantined_is_capped(self, ledger: Ledger, clock: FakeClock) -> None:
        """Only the latest 20 quarantined files are listed, newest first."""
        for n in range(25):
            clock.advance(seconds=1)
            ledger.record_quarantined(claim(ledger, sha=str(n)), f"/q/{n}", f"r{n}")
        summary = ledger.summary(clock.now.date())
        assert len(summary.recent_quarantined) == 20 and summary.quarantined_total == 25
        assert summary.recent_quarantined[0].reason == "r24"


A = "urn:mpid:SYNA"
B = "urn:mpid:SYNB"


class TestOutboundDedup:
    def test_mark_and_seen(self, ledger: Ledger) -> None:
        """Marked events are seen; re-marking is ignored and not counted."""
        assert not ledger.seen_event((A, "e1"))
        assert ledger.mark_events_written([(A, "e1"), (A, "e2")], Path("/out/f1.usr")) == 2
        assert ledger.seen_event((A, "e1")) and ledger.seen_event((A, "e2"))
        assert ledger.mark_events_written([(A, "e2"), (A, "e3")], "/out/f2.usr") == 1
        assert ledger.seen_events([(A, "e1"), (A, "e3"), (A, "e4"), (A, "e1")]) == {(A, "e1"), (A, "e3")}

    def test_many_ids(self, ledger: Ledger) -> None:
        """Large batches work (executemany, chunked lookups)."""
        keys = [(A, f"id-{n}") for n in range(1500)]
        assert ledger.mark_events_written(keys, "/out/big.usr") == 1500
        assert ledger.seen_events(keys + [(A, "nope")]) == set(keys)

    def test_an_event_is_its_source_and_id(self, ledger: Ledger) -> None:
        """CloudEvents: (source, id) is unique. Another sender's event with our id is not ours, written or not."""
        assert ledger.mark_events_written([(B, "e1")], "/out/theirs.usr") == 1
        assert not ledger.seen_event((A, "e1"))
        assert ledger.mark_events_written([(A, "e1")], "/out/ours.usr") == 1
        assert ledger.seen_events([(A, "e1"), (B, "e1"), (B, "e2")]) == {(A, "e1"), (B, "e1")}


class TestStorage:
    def test_wal_and_schema_version(self, ledger: Ledger, tmp_path: Path) -> None:
        """The ledger uses WAL and records its schema version."""
        assert ledger.schema_version == SCHEMA_VERSION
        conn = sqlite3.connect(tmp_path / "ledger.sqlite3")
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        """A ledger written by a newer bridge is refused rather than misread."""
        path = tmp_path / "l.sqlite3"
        Ledger(path).close()
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
        conn.close()
        with pytest.raises(StorageError, match="newer"):
            Ledger(path)

    def test_unopenable_path_is_storage_error(self, tmp_path: Path) -> None:
        """A missing folder is a StorageError with the sqlite error chained."""
        with pytest.raises(StorageError) as info:
            Ledger(tmp_path / "missing" / "l.sqlite3")
        assert isinstance(info.value.__cause__, sqlite3.Error)

    def test_not_a_database(self, tmp_path: Path) -> None:
        """A file that is not SQLite is a StorageError."""
        (tmp_path / "l.sqlite3").write_bytes(b"this is not a database" * 100)
        with pytest.raises(StorageError):
            Ledger(tmp_path / "l.sqlite3")

    def test_threads_share_one_ledger(self, ledger: Ledger) -> None:
        """Concurrent writers from several threads all get distinct ids."""
        ids: list[int] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            for i in range(50):
                file_id = claim(ledger, sha=f"{n}-{i}")
                parse(ledger, file_id)
                with lock:
                    ids.append(file_id)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(set(ids)) == 200
        assert ledger.summary(date(2024, 3, 7)).in_flight == 200

    def test_naive_clock_is_refused(self, tmp_path: Path) -> None:
        """Times must be timezone-aware, or 'today' would be ambiguous."""
        with (
            Ledger(tmp_path / "l.sqlite3", clock=lambda: datetime(2024, 1, 1)) as ledger,
            pytest.raises(StorageError),
        ):
            claim(ledger)


class TestOutboundFiles:
    """The outbound write protocol's records: counters, pending -> written, roll back, manifests."""

    @staticmethod
    def draft(name: str = "F.usr", origin: str | None = None) -> OutboundFileDraft:
        return OutboundFileDraft(kind="batch", path=Path(f"/out/{name}"), tmp_path=Path(f"/out/.{name}.x.tmp"),
                                 sha256="ab" * 32, size=10, flow="D0010002", from_participant="SYNA",
                                 to_participant="SYNB", file_identifier="0000000001", test_flag="OPER", origin=origin)

    def test_counters_are_per_sender_and_survive_reopen(self, tmp_path: Path) -> None:
        with Ledger(tmp_path / "l.sqlite3") as ledger:
            assert [ledger.allocate_file_identifier("SYNA") for _ in range(3)] == [1, 2, 3]
            assert ledger.allocate_file_identifier("SYNB") == 1
        with Ledger(tmp_path / "l.sqlite3") as ledger:
            assert ledger.allocate_file_identifier("SYNA") == 4

    def test_pending_then_written(self, ledger: Ledger) -> None:
        file_id = ledger.begin_outbound_file(self.draft(), [(A, "e1"), (A, "e2")])
        assert ledger.seen_events([(A, "e1"), (A, "e2"), (A, "e3"), (B, "e1")]) == {(A, "e1"), (A, "e2")}
        assert [r.id for r in ledger.pending_outbound_files()] == [file_id]
        ledger.finish_outbound_file(file_id)
        record = ledger.outbound_file(file_id)
        assert record and record.state == "written" and record.events == 2 and record.written_at is not None
        assert ledger.pending_outbound_files() == [] and ledger.find_outbound_by_event((A, "e2")) == record
        assert ledger.find_outbound_by_event((B, "e2")) is None

    def test_abandon_rolls_back_the_events(self, ledger: Ledger) -> None:
        file_id = ledger.begin_outbound_file(self.draft(), [(A, "e1")])
        ledger.abandon_outbound_file(file_id)
        assert not ledger.seen_event((A, "e1")) and ledger.outbound_file(file_id) is None

    def test_an_event_never_reaches_two_files(self, ledger: Ledger) -> None:
        ledger.begin_outbound_file(self.draft("A.usr"), [(A, "e1")])
        with pytest.raises(StorageError, match="already written"):
            ledger.begin_outbound_file(self.draft("B.usr"), [(A, "e2"), (A, "e1")])
        assert not ledger.seen_event((A, "e2")) and len(ledger.outbound_files()) == 1
        ledger.begin_outbound_file(self.draft("C.usr"), [(B, "e1")])  # another sender's e1 is another event

    def test_manifest_and_check(self, ledger: Ledger) -> None:
        assert ledger.outbound_manifest_sha256((A, "e1")) is None
        ledger.record_outbound_manifest((A, "e1"), "m1", "cd" * 32)
        ledger.record_outbound_manifest((B, "e1"), "m2", "ef" * 32)  # another sender cannot replace ours
        assert ledger.outbound_manifest_sha256((A, "e1")) == "cd" * 32
        assert ledger.outbound_manifest_sha256((B, "e1")) == "ef" * 32
        file_id = ledger.begin_outbound_file(self.draft(origin="SYNA|1|2|D0010002"), [(A, "e1")])
        ledger.record_manifest_check(file_id, "cd" * 32, False)
        record = ledger.outbound_file(file_id)
        assert record and record.manifest_match is False and record.origin == "SYNA|1|2|D0010002"

    def test_version_1_ledger_is_migrated(self, tmp_path: Path) -> None:
        """A ledger from before the outbound files keeps its written events and gains the new tables."""
        path = tmp_path / "old.sqlite3"
        conn = sqlite3.connect(path)
        conn.executescript(
            "CREATE TABLE written_events (event_id TEXT PRIMARY KEY, file TEXT NOT NULL, written_at TEXT NOT NULL)"
            " WITHOUT ROWID; INSERT INTO written_events VALUES ('old', '/out/x', '2024-01-01');"
            " CREATE TABLE files (id INTEGER PRIMARY KEY); PRAGMA user_version = 1;")
        conn.close()
        with Ledger(path) as ledger:
            assert ledger.schema_version == SCHEMA_VERSION and ledger.seen_event(("", "old"))
            assert ledger.allocate_file_identifier("SYNA") == 1

    def test_version_2_ledger_is_migrated_to_source_keys(self, tmp_path: Path) -> None:
        """Written events and manifests of a version 2 ledger gain the source of their file's sender; a manifest
        whose file was not written yet keeps no source and is still found by its first event's id."""
        path = tmp_path / "v2.sqlite3"
        conn = sqlite3.connect(path)
        conn.executescript("".join(MIGRATIONS[:2]) + "PRAGMA user_version = 2;")
        file_id = conn.execute(
            "INSERT INTO outbound_files (state, kind, path, tmp_path, sha256, size, flow, from_participant,"
            " to_participant, file_identifier, test_flag, events, created_at) VALUES ('written', 'original',"
            " '/out/F', '/out/.F.tmp', 'ab', 1, 'D0010002', 'SYNA', 'SYNB', '1', 'OPER', 2,"
            " '2024-01-01T00:00:00+00:00')").lastrowid
        conn.executemany("INSERT INTO written_events (event_id, file, written_at, outbound_file)"
                         " VALUES (?, '/out/F', 'now', ?)", [("e1", file_id), ("e2", file_id)])
        conn.executemany("INSERT INTO outbound_manifests VALUES (?, ?, ?, 'now')",
                         [("e1", "m1", "cd" * 32), ("later", "m2", "ef" * 32)])
        conn.commit()
        conn.close()
        with Ledger(path) as ledger:
            assert ledger.schema_version == SCHEMA_VERSION
            assert ledger.seen_events([(A, "e1"), (A, "e2"), (B, "e1")]) == {(A, "e1"), (A, "e2")}
            assert ledger.find_outbound_by_event((A, "e1")) is not None
            assert ledger.outbound_manifest_sha256((A, "e1")) == "cd" * 32
            assert ledger.outbound_manifest_sha256((B, "e1")) is None
            assert ledger.outbound_manifest_sha256((A, "later")) == "ef" * 32  # no source known: by id
            ledger.record_outbound_manifest((A, "later"), "m3", "01" * 32)
            assert ledger.outbound_manifest_sha256((A, "later")) == "01" * 32

class TestPrivacy:
    """Issue 14: the ledger names every file the bridge handled; it was created 0644."""

    def test_created_owner_only_with_its_wal_and_shm(self, tmp_path: Path) -> None:
        old = os.umask(0o022)
        try:
            ledger = Ledger(tmp_path / "ledger.sqlite3")
            ledger.record_claimed("ab" * 32, "a.usr", tmp_path / "p" / "a.usr", 1)
        finally:
            os.umask(old)
        names = ["ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm"]
        assert {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in names} == dict.fromkeys(names, 0o600)
        ledger.close()

    def test_an_older_ledger_is_made_owner_only(self, tmp_path: Path) -> None:
        Ledger(tmp_path / "ledger.sqlite3").close()
        os.chmod(tmp_path / "ledger.sqlite3", 0o644)
        Ledger(tmp_path / "ledger.sqlite3").close()
        assert stat.S_IMODE((tmp_path / "ledger.sqlite3").stat().st_mode) == 0o600

    def test_undecodable_names_are_stored_and_found(self, tmp_path: Path) -> None:
        """A claim path with bytes that are not UTF-8 (surrogate escapes) used to raise UnicodeEncodeError."""
        ledger = Ledger(tmp_path / "ledger.sqlite3")
        path = os.fsdecode(b"/spool/processing/1-2-bad\xff")
        file_id = ledger.record_claimed("ab" * 32, os.fsdecode(b"bad\xff"), path, 1)
        found = ledger.get_by_claim_path(path)
        assert found is not None and found.id == file_id and found.original_name == "bad\\xff"
        ledger.close()
