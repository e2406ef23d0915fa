"""The ledger ports (`InboundLedger`, `OutboundLedger`) and their records: bridge.adapters.ledger's SQLite
`Ledger` implements both."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

#: An outbound event as CloudEvents define its identity: (`source`, `id`). Another sender's event with the same id
#: is another event, so it can neither pass for a duplicate of ours nor replace our manifest.
EventKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One claimed file as the ledger knows it, and what has happened to it."""

    id: int
    sha256: str
    original_name: str
    claim_path: Path
    size: int
    state: str  # claimed -> parsed -> published -> archived, or quarantined (from any but archived)
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
    """An outbound file about to be linked into place: what `begin_outbound_file` records before the link."""

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
    """One outbound file of the ledger: `pending` between its recording and its link, then `written`."""

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


class InboundLedger(Protocol):
    """The inbound chain's record of every claimed file, so that a crash at any moment resumes without loss.

    A state never goes back, and a final state (archived, quarantined) is never left: such a step raises
    StorageError, as does a ledger that cannot be written."""

    def record_claimed(self, sha256: str, original_name: str, claim_path: Path | str, size: int) -> int:
        """A file was claimed; returns its ledger id."""
        ...

    def record_parsed(self, file_id: int, *, file_identifier: str, flow: str, from_participant: str,
                      to_participant: str, instances: int) -> None:
        """The file was checked: its header facts and how many flow instances (events to come) it holds."""
        ...

    def record_published(self, file_id: int, *, events: int, first_event_id: str | None,
                         last_event_id: str | None) -> None:
        """All the file's events (and its manifest) were confirmed by the broker."""
        ...

    def record_archived(self, file_id: int, archive_path: Path | str) -> None:
        """The file was archived (the end of a good file's life)."""
        ...

    def record_quarantined(self, file_id: int, path: Path | str, reason: str) -> None:
        """The file was set aside in quarantine, with a one-line reason."""
        ...

    def get_by_claim_path(self, path: Path | str) -> FileRecord | None:
        """The latest record of a claimed file (a restart resumes a pending claim from it)."""
        ...

    def find_completed_by_sha256(self, sha256: str) -> FileRecord | None:
        """The first file with this content that was published or archived (duplicate detection)."""
        ...


class OutboundLedger(Protocol):
    """The outbound writer's record of which events are in which file, for its exactly-once protocol."""

    def seen_events(self, keys: Iterable[EventKey]) -> set[EventKey]:
        """Which of these events are in a file already (pending or written)."""
        ...

    def allocate_file_identifier(self, sender: str) -> int:
        """The next number (1, 2, ...) of `sender`'s durable counter; never handed out twice, gaps allowed."""
        ...

    def raise_file_identifier(self, sender: str, at_least: int) -> None:
        """Move `sender`'s counter up to `at_least` (a number the daemon's pair took), never back."""
        ...

    def mark_events_written(self, keys: Iterable[EventKey], file: Path | str) -> int:
        """Record events another writer (the pair's other daemon) put in `file`; how many were new."""
        ...

    def begin_outbound_file(self, draft: OutboundFileDraft, keys: Iterable[EventKey]) -> int:
        """Record a file as `pending` with its events in one step; its id. StorageError, recording nothing, when
        one of the events is in a file already: an event never reaches two files."""
        ...

    def finish_outbound_file(self, file_id: int) -> None:
        """The file is in place under its final name: `written`."""
        ...

    def abandon_outbound_file(self, file_id: int) -> None:
        """Forget a pending file and its events (it never reached its final name): they may be written again."""
        ...

    def pending_outbound_files(self) -> list[OutboundFileRecord]:
        """Files recorded but not known to be in place, oldest first: what recovery settles."""
        ...

    def outbound_file(self, file_id: int) -> OutboundFileRecord | None:
        """The outbound file with this id."""
        ...

    def find_outbound_by_event(self, key: EventKey) -> OutboundFileRecord | None:
        """The outbound file (pending or written) that holds this event, if any."""
        ...

    def record_outbound_manifest(self, first_event: EventKey, manifest_id: str, sha256: str) -> None:
        """Remember a source file's manifest, keyed by its first event (a later one of the same key replaces it)."""
        ...

    def outbound_manifest_sha256(self, first_event: EventKey) -> str | None:
        """The SHA-256 the manifest of the source file whose first event is `first_event` announced."""
        ...

    def record_manifest_check(self, file_id: int, manifest_sha256: str, match: bool) -> None:
        """The result of comparing a reproduced file's bytes with its manifest."""
        ...
