"""The ledger's SQLite connection: opening it (0600, WAL, `synchronous=FULL`), its schema migrations, and the one
locked transaction or read every inbound and outbound method goes through."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from bridge.errors import StorageError

MIGRATIONS: tuple[str, ...] = (
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
SCHEMA_VERSION = len(MIGRATIONS)


class LedgerConnection:
    """One connection (`check_same_thread=False`) guarded by a lock, shared by the threads of one process; the
    inbound and outbound sides (bridge/adapters/ledger/inbound.py, outbound.py) add their tables' methods."""

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
                for statement in _split_sql(MIGRATIONS[number]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        """The ledger's `user_version`."""
        return int(self._read("schema version", "PRAGMA user_version")[0][0])

    # -------------------------------------------------------------------------------------------------- time

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


def storable(text: str) -> str:
    """A path or name as SQLite can store it: undecodable bytes (surrogate escapes) as `\\xNN`, the same each time,
    so a lookup finds what was stored."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _split_sql(script: str) -> list[str]:
    """Statements of a migration (they contain no `;` inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def stored_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def stored_path(value: str | None) -> Path | None:
    return Path(value) if value else None


