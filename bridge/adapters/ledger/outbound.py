"""The outbound side of the ledger: which events were written into which DTN file (keyed as CloudEvents define
uniqueness, by `source` and `id`), the outbound files of the exactly-once protocol of bridge.outbound, the file
identifier counters and the source files' manifests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from bridge.adapters.ledger.connection import LedgerConnection, stored_time
from bridge.errors import StorageError
from bridge.ports import EventKey, OutboundFileDraft, OutboundFileRecord


class OutboundLedger(LedgerConnection):
    """The `written_events`, `outbound_files`, `outbound_counters` and `outbound_manifests` tables."""

    def outbound_files_written_between(self, start: datetime, end: datetime) -> list[OutboundFileRecord]:
        """Outbound files written in [start, end), for the reconciliation report."""
        rows = self._read("outbound_files_written_between",
                          "SELECT * FROM outbound_files WHERE state = 'written' AND written_at >= ? AND written_at < ?"
                          " ORDER BY id", (start.isoformat(), end.isoformat()))
        return [_outbound_record(row) for row in rows]

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

    def raise_file_identifier(self, sender: str, at_least: int) -> None:
        """Move `sender`'s counter up to `at_least` (a number the daemon's pair took): never back."""
        with self._transaction("raise_file_identifier") as conn:
            conn.execute(
                "INSERT INTO outbound_counters (sender, last_value) VALUES (?, ?)"
                " ON CONFLICT (sender) DO UPDATE SET last_value = max(last_value, excluded.last_value)",
                (sender, at_least),
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

def _outbound_record(row: sqlite3.Row) -> OutboundFileRecord:
    created_at = stored_time(row["created_at"])
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
        written_at=stored_time(row["written_at"]),
    )
