"""The ledger: one SQLite table recording what happened to every file the bridge claimed.

It answers "was this content already published?" (duplicate detection by SHA-256), "where was I?" after a crash
(`get_by_claim_path` for each pending claim), the status summary, and which outbound events were already written
(`seen_event` / `seen_events`, keyed as CloudEvents define uniqueness: by `source` and `id`).

Durability: WAL journal with `synchronous=FULL`, so a committed state change survives a power cut (the ledger is
written a handful of times per file, so the fsync per commit is affordable). Times are stored as UTC ISO-8601 text;
"today" in `summary` is the UTC day.

Thread-safety: one `Ledger` holds one connection (`check_same_thread=False`) guarded by a lock, so it can be shared
by the threads of one process; every method is one short transaction. Several processes may open the same file
(WAL plus a busy timeout); their writes are serialised by SQLite.

Schema changes are migrations keyed by `PRAGMA user_version`; a ledger written by a newer bridge is refused.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from bridge.errors import StorageError

__all__ = [
    "SCHEMA_VERSION",
    "EventKey",
    "STATES",
    "FileRecord",
    "Ledger",
    "LedgerSummary",
    "OutboundFileDraft",
    "OutboundFileRecord",
    "QuarantinedFile",
]

#: An outbound event as CloudEvents define its identity: (`source`, `id`). Another sender's event with the same id
#: is another event, so it can neither pass for a duplicate of ours nor replace our manifest.
EventKey = tuple[str, str]

STATES = ("claimed", "parsed", "published", "archived", "quarantined")

# Which state may follow which. Repeating a step (a restart redoing it) is allowed; leaving a final state is not.
_NEXT: dict[str, frozenset[str]] = {
    "claimed": frozenset({"claimed", "parsed", "archived", "quarantined"}),  # archived: a skipped duplicate
    "parsed": frozenset({"parsed", "published", "archived", "quarantined"}),
    "published": frozenset({"published", "archived", "quarantined"}),
    "archived": frozenset(),
    "quarantined": frozenset(),
}

_MIGRATIONS: tuple[str, ...] = (
    # 1: files and outbound events
    """
    CREATE TABLE files (
        id               INTEGER PRIMARY KEY,
        sha256           TEXT NOT NULL,
        original_name    TEXT NOT NULL,
        claim_path       TEXT NOT NULL,
        size             INTEGER NOT NULL,
        state            TEXT NOT NULL
                         CHECK (state IN ('claimed', 'parsed', 'published', 'archived', 'quarantined')),
        file_identifier  TEXT,
        flow             TEXT,
        from_participant TEXT,
        to_participant   TEXT,
        instances        INTEGER,
        events           INTEGER,
        first_event_id   TEXT,
        last_event_id    TEXT,
        final_path       TEXT,
        reason           TEXT,
        claimed_at       TEXT NOT NULL,
        published_at     TEXT,
        archived_at      TEXT,
        quarantined_at   TEXT,
        updated_at       TEXT NOT NULL
    );
    CREATE INDEX files_sha256 ON files (sha256, state);
    CREATE INDEX files_claim_path ON files (claim_path);
    CREATE INDEX files_state ON files (state, updated_at);
    CREATE TABLE written_events (
        event_id   TEXT PRIMARY KEY,
        file       TEXT NOT NULL,
        written_at TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: outbound files (the exactly-once protocol of bridge.outbound), file identifier counters, manifests
    """
    CREATE TABLE outbound_counters (
        sender     TEXT PRIMARY KEY,
        last_value INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE outbound_files (
        id               INTEGER PRIMARY KEY,
        state            TEXT NOT NULL CHECK (state IN ('pending', 'written')),
        kind             TEXT NOT NULL,
        path             TEXT NOT NULL,
        tmp_path         TEXT NOT NULL,
        sha256           TEXT NOT NULL,
        size             INTEGER NOT NULL,
        flow             TEXT NOT NULL,
        from_participant TEXT NOT NULL,
        to_participant   TEXT NOT NULL,
        file_identifier  TEXT NOT NULL,
        test_flag        TEXT NOT NULL,
        events           INTEGER NOT NULL,
        origin           TEXT,
        manifest_sha256  TEXT,
        manifest_match   INTEGER,
        created_at       TEXT NOT NULL,
        written_at       TEXT
    );
    CREATE INDEX outbound_files_state ON outbound_files (state);
    CREATE INDEX outbound_files_origin ON outbound_files (origin);
    CREATE TABLE outbound_manifests (
        first_event_id TEXT PRIMARY KEY,
        manifest_id    TEXT NOT NULL,
        sha256         TEXT NOT NULL,
        received_at    TEXT NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE written_events ADD COLUMN outbound_file INTEGER;
    CREATE INDEX written_events_outbound_file ON written_events (outbound_file);
    """,
    # 3: outbound events and manifests keyed by (source, id). An existing row's source is its file's sender (every
    # event of an outbound file comes from the participant that `source` names); a manifest's, the sender of the
    # file holding its first event; '' when unknown (a manifest whose file was not written yet: found as before).
    """
    CREATE TABLE outbound_manifests_3 (
        source         TEXT NOT NULL,
        first_event_id TEXT NOT NULL,
        manifest_id    TEXT NOT NULL,
        sha256         TEXT NOT NULL,
        received_at    TEXT NOT NULL,
        PRIMARY KEY (source, first_event_id)
    ) WITHOUT ROWID;
    INSERT INTO outbound_manifests_3 (source, first_event_id, manifest_id, sha256, received_at)
        SELECT COALESCE('urn:mpid:' || f.from_participant, ''), m.first_event_id, m.manifest_id, m.sha256,
               m.received_at
        FROM outbound_manifests m
        LEFT JOIN written_events w ON w.event_id = m.first_event_id
        LEFT JOIN outbound_files f ON f.id = w.outbound_file;
    DROP TABLE outbound_manifests;
    ALTER TABLE outbound_manifests_3 RENAME TO outbound_manifests;
    CREATE TABLE written_events_3 (
        source        TEXT NOT NULL,
        event_id      TEXT NOT NULL,
        file          TEXT NOT NULL,
        written_at    TEXT NOT NULL,
        outbound_file INTEGER,
        PRIMARY KEY (source, event_id)
    ) WITHOUT ROWID;
    INSERT INTO written_events_3 (source, event_id, file, written_at, outbound_file)
        SELECT COALESCE('urn:mpid:' || f.from_participant, ''), w.event_id, w.file, w.written_at, w.outbound_file
        FROM written_events w LEFT JOIN outbound_files f ON f.id = w.outbound_file;
    DROP TABLE written_events;
    ALTER TABLE written_events_3 RENAME TO written_events;
    CREATE INDEX written_events_outbound_file ON written_events (outbound_file);
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)
_RECENT_QUARANTINED = 20


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One row of the ledger: a claimed file and what has happened to it."""

    id: int
    sha256: str
    original_name: str
    claim_path: Path
    size: int
    state: str
    file_identifier: str | None
    flow: str | None
    from_participant: str | None
    to_participant: str | None
    instances: int | None
    events: int | None
    first_event_id: str | None
    last_event_id: str | None
    final_path: Path | None
    reason: str | None
    claimed_at: datetime
    published_at: datetime | None
    archived_at: datetime | None
    quarantined_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OutboundFileDraft:
    """An outbound file about to be renamed into place: what `begin_outbound_file` records before the rename."""

    kind: str  # "original" (a source file reproduced) or "batch" (a new file of batched events)
    path: Path  # the final name in the outbound folder
    tmp_path: Path  # the hidden temporary name it is written under first
    sha256: str
    size: int
    flow: str
    from_participant: str
    to_participant: str
    file_identifier: str
    test_flag: str
    origin: str | None = None  # the source file's key (sender|file id|created|flow) for a reproduced file


@dataclass(frozen=True, slots=True)
class OutboundFileRecord:
    """One outbound file of the ledger: `pending` between its recording and its rename, then `written`."""

    id: int
    state: str
    kind: str
    path: Path
    tmp_path: Path
    sha256: str
    size: int
    flow: str
    from_participant: str
    to_participant: str
    file_identifier: str
    test_flag: str
    events: int
    origin: str | None
    manifest_sha256: str | None
    manifest_match: bool | None
    created_at: datetime
    written_at: datetime | None


@dataclass(frozen=True, slots=True)
class QuarantinedFile:
    """A quarantined file as the status summary lists it."""

    id: int
    original_name: str
    path: Path | None
    reason: str | None
    quarantined_at: datetime | None


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """Counts for `dtn-bridge status`; the days are UTC days."""

    claimed: int  # pending: claimed, not yet parsed
    in_flight: int  # parsed, not yet published
    published_today: int
    archived_today: int
    quarantined_today: int
    quarantined_total: int
    recent_quarantined: tuple[QuarantinedFile, ...]  # latest first, at most 20


class Ledger:
    """The ledger file; open with `Ledger(path)` (e.g. `config.state.ledger_path`), close with `close()`."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        _private(self.path)
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open ledger {self.path}: {exc}") from exc
        try:
            self._conn.row_factory = sqlite3.Row
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"ledger {self.path}: cannot use WAL journal mode (got {mode})")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._migrate()
            for companion in ("-wal", "-shm"):  # SQLite gives them the database's mode; older ledgers' may be wider
                _private(self.path.with_name(self.path.name + companion), create=False)
        except sqlite3.Error as exc:
            self._conn.close()
            raise StorageError(f"cannot open ledger {self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    # ----------------------------------------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction under the lock; sqlite errors become StorageError naming `what`."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"ledger {self.path}: {what}: {exc}") from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # no transaction left to roll back
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(f"ledger {self.path}: {what}: {exc}") from exc
                raise

    def _read(self, what: str, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"ledger {self.path}: {what}: {exc}") from exc

    def _migrate(self) -> None:
        with self._transaction("migrate") as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"ledger {self.path} has schema version {version}, newer than this bridge's {SCHEMA_VERSION}"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in _split_sql(_MIGRATIONS[number]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        """The ledger's `user_version`."""
        return int(self._read("schema version", "PRAGMA user_version")[0][0])

    # ------------------------------------------------------------------------------------------------- writes

    def record_claimed(self, sha256: str, original_name: str, claim_path: Path | str, size: int) -> int:
        """A file was claimed; returns its ledger id."""
        now = self._now()
        with self._transaction("record_claimed") as conn:
            cursor = conn.execute(
                "INSERT INTO files (sha256, original_name, claim_path, size, state, claimed_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'claimed', ?, ?)",
                (sha256, _storable(original_name), _storable(str(claim_path)), size, now, now),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def record_parsed(
        self,
        file_id: int,
        *,
        file_identifier: str,
        flow: str,
        from_participant: str,
        to_participant: str,
        instances: int,
    ) -> None:
        """The file parsed: its header facts and how many flow instances (events to come) it holds."""
        self._update(
            file_id,
            "parsed",
            file_identifier=file_identifier,
            flow=flow,
            from_participant=from_participant,
            to_participant=to_participant,
            instances=instances,
        )

    def record_published(
        self, file_id: int, *, events: int, first_event_id: str | None, last_event_id: str | None
    ) -> None:
        """All the file's events were confirmed by the broker."""
        self._update(
            file_id,
            "published",
            events=events,
            first_event_id=first_event_id,
            last_event_id=last_event_id,
            published_at=self._now(),
        )

    def record_archived(self, file_id: int, archive_path: Path | str) -> None:
        """The file was moved to the archive (the end of a good file's life)."""
        self._update(file_id, "archived", final_path=str(archive_path), archived_at=self._now())

    def record_quarantined(self, file_id: int, path: Path | str, reason: str) -> None:
        """The file was set aside in quarantine, with a one-line reason."""
        self._update(file_id, "quarantined", final_path=str(path), reason=reason, quarantined_at=self._now())

    def _update(self, file_id: int, state: str, **columns: object) -> None:
        columns["state"] = state
        columns["updated_at"] = self._now()
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with self._transaction(f"record_{state}") as conn:
            row = conn.execute("SELECT state FROM files WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                raise StorageError(f"ledger {self.path}: record_{state}: no file with id {file_id}")
            if state not in _NEXT[row["state"]]:
                raise StorageError(
                    f"ledger {self.path}: file {file_id} cannot go from {row['state']} to {state}"
                )
            conn.execute(f"UPDATE files SET {assignments} WHERE id = ?", (*columns.values(), file_id))

    # -------------------------------------------------------------------------------------------------- reads

    def get(self, file_id: int) -> FileRecord | None:
        """The record with this id."""
        rows = self._read("get", "SELECT * FROM files WHERE id = ?", (file_id,))
        return _record(rows[0]) if rows else None

    def get_by_claim_path(self, path: Path | str) -> FileRecord | None:
        """The latest record of a claimed file (a restart uses it to resume a pending claim)."""
        rows = self._read(
            "get_by_claim_path",
            "SELECT * FROM files WHERE claim_path = ? ORDER BY id DESC LIMIT 1",
            (_storable(str(path)),),
        )
        return _record(rows[0]) if rows else None

    def files_claimed_between(self, start: datetime, end: datetime) -> list[FileRecord]:
        """Inbound files claimed in [start, end), for the reconciliation report."""
        rows = self._read("files_claimed_between",
                          "SELECT * FROM files WHERE claimed_at >= ? AND claimed_at < ? ORDER BY id",
                          (start.isoformat(), end.isoformat()))
        return [_record(row) for row in rows]

    def outbound_files_written_between(self, start: datetime, end: datetime) -> list[OutboundFileRecord]:
        """Outbound files written in [start, end), for the reconciliation report."""
        rows = self._read("outbound_files_written_between",
                          "SELECT * FROM outbound_files WHERE state = 'written' AND written_at >= ? AND written_at < ?"
                          " ORDER BY id", (start.isoformat(), end.isoformat()))
        return [_outbound_record(row) for row in rows]

    def find_completed_by_sha256(self, sha256: str) -> FileRecord | None:
        """The first earlier file with this content that was published or archived (duplicate detection).

        Archived-without-publishing (a skipped duplicate) counts too: its content was published by an earlier file.
        """
        rows = self._read(
            "find_completed_by_sha256",
            "SELECT * FROM files WHERE sha256 = ? AND state IN ('published', 'archived') ORDER BY id LIMIT 1",
            (sha256,),
        )
        return _record(rows[0]) if rows else None

    def summary(self, today: date) -> LedgerSummary:
        """Counts of files by state, and today's (UTC) throughput, plus the latest quarantined files."""
        start = datetime(today.year, today.month, today.day, tzinfo=UTC)
        lo, hi = start.isoformat(), (start + timedelta(days=1)).isoformat()
        with self._lock:
            try:
                counts = self._conn.execute(
                    """
                    SELECT
                        coalesce(sum(state = 'claimed'), 0),
                        coalesce(sum(state = 'parsed'), 0),
                        coalesce(sum(published_at >= :lo AND published_at < :hi), 0),
                        coalesce(sum(archived_at >= :lo AND archived_at < :hi), 0),
                        coalesce(sum(state = 'quarantined' AND quarantined_at >= :lo AND quarantined_at < :hi), 0),
                        coalesce(sum(state = 'quarantined'), 0)
                    FROM files
                    """,
                    {"lo": lo, "hi": hi},
                ).fetchone()
                recent = self._conn.execute(
                    "SELECT id, original_name, final_path, reason, quarantined_at FROM files"
                    " WHERE state = 'quarantined' ORDER BY quarantined_at DESC, id DESC LIMIT ?",
                    (_RECENT_QUARANTINED,),
                ).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"ledger {self.path}: summary: {exc}") from exc
        return LedgerSummary(
            claimed=counts[0],
            in_flight=counts[1],
            published_today=counts[2],
            archived_today=counts[3],
            quarantined_today=counts[4],
            quarantined_total=counts[5],
            recent_quarantined=tuple(
                QuarantinedFile(
                    id=r["id"],
                    original_name=r["original_name"],
                    path=_path(r["final_path"]),
                    reason=r["reason"],
                    quarantined_at=_time(r["quarantined_at"]),
                )
                for r in recent
            ),
        )

    # ---------------------------------------------------------------------------------------- outbound dedup

    def seen_event(self, key: EventKey) -> bool:
        """Whether an outbound event was already written into a DTN file (a redelivered message)."""
        return bool(self.seen_events([key]))

    def seen_events(self, keys: Iterable[EventKey]) -> set[EventKey]:
        """The subset of `keys` already written (one query per 400 keys)."""
        unique = list(dict.fromkeys(keys))
        seen: set[EventKey] = set()
        for i in range(0, len(unique), 400):
            chunk = unique[i : i + 400]
            marks = ", ".join(["(?, ?)"] * len(chunk))
            rows = self._read("seen_events", "SELECT source, event_id FROM written_events WHERE (source, event_id)"
                              f" IN (VALUES {marks})", [part for key in chunk for part in key])
            seen.update((row[0], row[1]) for row in rows)
        return seen

    def mark_events_written(self, keys: Iterable[EventKey], file: Path | str) -> int:
        """Record that these events are in `file` (after it was written); returns how many were new."""
        now = self._now()
        rows = [(source, event_id, str(file), now) for source, event_id in keys]
        with self._transaction("mark_events_written") as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO written_events (source, event_id, file, written_at) VALUES (?, ?, ?, ?)", rows
            )
            return conn.total_changes - before

    # ------------------------------------------------------------------------------------------ outbound files

    def allocate_file_identifier(self, sender: str) -> int:
        """The next number of `sender`'s durable file identifier counter (1, 2, ...); never handed out twice.

        A number whose file is later rolled back is not reused: gaps are allowed, repeats are not.
        """
        with self._transaction("allocate_file_identifier") as conn:
            conn.execute(
                "INSERT INTO outbound_counters (sender, last_value) VALUES (?, 1)"
                " ON CONFLICT (sender) DO UPDATE SET last_value = last_value + 1",
                (sender,),
            )
            return int(
                conn.execute("SELECT last_value FROM outbound_counters WHERE sender = ?", (sender,)).fetchone()[0]
            )

    def begin_outbound_file(self, draft: OutboundFileDraft, keys: Iterable[EventKey]) -> int:
        """Record a file as `pending` together with its events, in one transaction, before it is renamed.

        Returns the file's ledger id. Raises StorageError (and records nothing) when one of the events is already
        written: an event must never reach two files.
        """
        now = self._now()
        ids = list(keys)
        with self._transaction("begin_outbound_file") as conn:
            cursor = conn.execute(
                "INSERT INTO outbound_files (state, kind, path, tmp_path, sha256, size, flow, from_participant,"
                " to_participant, file_identifier, test_flag, events, origin, created_at)"
                " VALUES ('pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (draft.kind, str(draft.path), str(draft.tmp_path), draft.sha256, draft.size, draft.flow,
                 draft.from_participant, draft.to_participant, draft.file_identifier, draft.test_flag, len(ids),
                 draft.origin, now),
            )
            file_id = cursor.lastrowid
            assert file_id is not None
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO written_events (source, event_id, file, written_at, outbound_file)"
                " VALUES (?, ?, ?, ?, ?)",
                [(source, event_id, str(draft.path), now, file_id) for source, event_id in ids],
            )
            if conn.total_changes - before != len(set(ids)):
                raise StorageError(f"ledger {self.path}: begin_outbound_file: some events of {draft.path.name} "
                                   "are already written")
            return file_id

    def finish_outbound_file(self, file_id: int) -> None:
        """The file is in place under its final name (renamed and the folder fsynced)."""
        with self._transaction("finish_outbound_file") as conn:
            conn.execute("UPDATE outbound_files SET state = 'written', written_at = ? WHERE id = ?",
                         (self._now(), file_id))

    def abandon_outbound_file(self, file_id: int) -> None:
        """Forget a pending file and its event ids (it never reached its final name): they may be written again."""
        with self._transaction("abandon_outbound_file") as conn:
            conn.execute("DELETE FROM written_events WHERE outbound_file = ?", (file_id,))
            conn.execute("DELETE FROM outbound_files WHERE id = ? AND state = 'pending'", (file_id,))

    def pending_outbound_files(self) -> list[OutboundFileRecord]:
        """Files recorded but not known to be in place: what recovery must finish or roll back."""
        rows = self._read("pending_outbound_files",
                          "SELECT * FROM outbound_files WHERE state = 'pending' ORDER BY id")
        return [_outbound_record(row) for row in rows]

    def outbound_file(self, file_id: int) -> OutboundFileRecord | None:
        """The outbound file with this id."""
        rows = self._read("outbound_file", "SELECT * FROM outbound_files WHERE id = ?", (file_id,))
        return _outbound_record(rows[0]) if rows else None

    def outbound_files(self) -> list[OutboundFileRecord]:
        """Every outbound file, oldest first (tests and status)."""
        return [_outbound_record(r) for r in self._read("outbound_files", "SELECT * FROM outbound_files ORDER BY id")]

    def find_outbound_by_event(self, key: EventKey) -> OutboundFileRecord | None:
        """The outbound file (pending or written) that holds this event, if any."""
        rows = self._read(
            "find_outbound_by_event",
            "SELECT f.* FROM written_events e JOIN outbound_files f ON f.id = e.outbound_file"
            " WHERE e.source = ? AND e.event_id = ?",
            key,
        )
        return _outbound_record(rows[0]) if rows else None

    def record_outbound_manifest(self, first_event: EventKey, manifest_id: str, sha256: str) -> None:
        """Remember a source file's manifest (keyed by its first event: the sender's own key, so no other sender
        can replace it) until, or after, the file is reproduced."""
        with self._transaction("record_outbound_manifest") as conn:
            conn.execute(
                "INSERT INTO outbound_manifests (source, first_event_id, manifest_id, sha256, received_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, first_event_id) DO UPDATE"
                " SET manifest_id = excluded.manifest_id, sha256 = excluded.sha256",
                (*first_event, manifest_id, sha256, self._now()),
            )

    def outbound_manifest_sha256(self, first_event: EventKey) -> str | None:
        """The SHA-256 a manifest announced for the source file whose first event is `first_event` (a manifest
        migrated from before sources were recorded, without one, is found by the id alone)."""
        rows = self._read("outbound_manifest_sha256",
                          "SELECT sha256 FROM outbound_manifests WHERE first_event_id = ? AND source IN (?, '')"
                          " ORDER BY source DESC LIMIT 1", (first_event[1], first_event[0]))
        return str(rows[0][0]) if rows else None

    def record_manifest_check(self, file_id: int, manifest_sha256: str, match: bool) -> None:
        """The result of comparing a reproduced file's bytes with its manifest."""
        with self._transaction("record_manifest_check") as conn:
            conn.execute("UPDATE outbound_files SET manifest_sha256 = ?, manifest_match = ? WHERE id = ?",
                         (manifest_sha256, int(match), file_id))

    # -------------------------------------------------------------------------------------------------- misc

    def _now(self) -> str:
        now = self._clock()
        if now.tzinfo is None:
            raise StorageError("ledger clock must return an aware datetime")
        return now.astimezone(UTC).isoformat(timespec="microseconds")


def _private(path: Path, *, create: bool = True) -> None:
    """Make the ledger file (or a companion) readable by its owner only (0600), creating it empty if asked: it names
    every file the bridge handled. SQLite creates the -wal and -shm files with the database file's mode."""
    try:
        if create:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        return  # no folder (sqlite3.connect then says so), or no companion file
    except OSError as exc:
        raise StorageError(f"cannot open ledger {path}: {exc.strerror or exc}") from exc


def _storable(text: str) -> str:
    """A path or name as SQLite can store it: undecodable bytes (surrogate escapes) as `\\xNN`, the same each time,
    so a lookup finds what was stored."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _split_sql(script: str) -> list[str]:
    """Statements of a migration (they contain no `;` inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _record(row: sqlite3.Row) -> FileRecord:
    claimed_at = _time(row["claimed_at"])
    updated_at = _time(row["updated_at"])
    assert claimed_at is not None and updated_at is not None
    return FileRecord(
        id=row["id"],
        sha256=row["sha256"],
        original_name=row["original_name"],
        claim_path=Path(row["claim_path"]),
        size=row["size"],
        state=row["state"],
        file_identifier=row["file_identifier"],
        flow=row["flow"],
        from_participant=row["from_participant"],
        to_participant=row["to_participant"],
        instances=row["instances"],
        events=row["events"],
        first_event_id=row["first_event_id"],
        last_event_id=row["last_event_id"],
        final_path=_path(row["final_path"]),
        reason=row["reason"],
        claimed_at=claimed_at,
        published_at=_time(row["published_at"]),
        archived_at=_time(row["archived_at"]),
        quarantined_at=_time(row["quarantined_at"]),
        updated_at=updated_at,
    )


def _outbound_record(row: sqlite3.Row) -> OutboundFileRecord:
    created_at = _time(row["created_at"])
    assert created_at is not None
    match = row["manifest_match"]
    return OutboundFileRecord(
        id=row["id"],
        state=row["state"],
        kind=row["kind"],
        path=Path(row["path"]),
        tmp_path=Path(row["tmp_path"]),
        sha256=row["sha256"],
        size=row["size"],
        flow=row["flow"],
        from_participant=row["from_participant"],
        to_participant=row["to_participant"],
        file_identifier=row["file_identifier"],
        test_flag=row["test_flag"],
        events=row["events"],
        origin=row["origin"],
        manifest_sha256=row["manifest_sha256"],
        manifest_match=None if match is None else bool(match),
        created_at=created_at,
        written_at=_time(row["written_at"]),
    )
