"""The inbound side of the ledger: one row per claimed file and its way through the states, duplicate detection
by SHA-256, the status summary."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bridge.adapters.ledger.connection import LedgerConnection, storable, stored_path, stored_time
from bridge.errors import StorageError
from bridge.ports import FileRecord

STATES = ("claimed", "parsed", "published", "archived", "quarantined")

# Which state may follow which. Repeating a step (a restart redoing it) is allowed; leaving a final state is not.
_NEXT: dict[str, frozenset[str]] = {
    "claimed": frozenset({"claimed", "parsed", "archived", "quarantined"}),  # archived: a skipped duplicate
    "parsed": frozenset({"parsed", "published", "archived", "quarantined"}),
    "published": frozenset({"published", "archived", "quarantined"}),
    "archived": frozenset(),
    "quarantined": frozenset(),
}

_RECENT_QUARANTINED = 20


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


class InboundLedger(LedgerConnection):
    """The `files` table: what happened to every file the bridge claimed."""

    # ------------------------------------------------------------------------------------------------- writes

    def record_claimed(self, sha256: str, original_name: str, claim_path: Path | str, size: int) -> int:
        """A file was claimed; returns its ledger id."""
        now = self._now()
        with self._transaction("record_claimed") as conn:
            cursor = conn.execute(
                "INSERT INTO files (sha256, original_name, claim_path, size, state, claimed_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'claimed', ?, ?)",
                (sha256, storable(original_name), storable(str(claim_path)), size, now, now),
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
            (storable(str(path)),),
        )
        return _record(rows[0]) if rows else None

    def files_claimed_between(self, start: datetime, end: datetime) -> list[FileRecord]:
        """Inbound files claimed in [start, end), for the reconciliation report."""
        rows = self._read("files_claimed_between",
                          "SELECT * FROM files WHERE claimed_at >= ? AND claimed_at < ? ORDER BY id",
                          (start.isoformat(), end.isoformat()))
        return [_record(row) for row in rows]

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
                    path=stored_path(r["final_path"]),
                    reason=r["reason"],
                    quarantined_at=stored_time(r["quarantined_at"]),
                )
                for r in recent
            ),
        )

def _record(row: sqlite3.Row) -> FileRecord:
    claimed_at = stored_time(row["claimed_at"])
    updated_at = stored_time(row["updated_at"])
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
        final_path=stored_path(row["final_path"]),
        reason=row["reason"],
        claimed_at=claimed_at,
        published_at=stored_time(row["published_at"]),
        archived_at=stored_time(row["archived_at"]),
        quarantined_at=stored_time(row["quarantined_at"]),
        updated_at=updated_at,
    )


