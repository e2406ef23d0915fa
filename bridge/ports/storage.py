"""The spool, outbound folder and watcher ports: bridge.adapters.spool and bridge.adapters.watcher implement
them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Claim:
    """A file this process owns: its path in the processing area, the name it arrived with, when it was claimed."""

    path: Path
    original_name: str
    claimed_at: datetime


class Spool(Protocol):
    """Moves of dropped files that never lose one: claim, archive, quarantine (with a report), set aside.

    Archive and quarantine never overwrite (a taken name gets a numbered suffix); storage faults raise StorageError
    and leave the claim where it was, to be retried."""

    def claim(self, path: Path) -> Claim | None:
        """Take a dropped file into processing, atomically; None when it vanished (another instance took it)."""
        ...

    def claim_copy(self, path: Path) -> Claim | None:
        """Shadow mode: claim a copy and leave the dropped file where it is; None when it is gone, not a regular
        file of one link, or was copied already unchanged (a rescan finds files that stay in the folder)."""
        ...

    def pending_claims(self) -> list[Claim]:
        """Claims a previous run did not finish, in claim order."""
        ...

    def unsafe(self, claim: Claim) -> str | None:
        """Why the claimed entry must not be opened (a link, a device, unreadable), or None when it is safe."""
        ...

    def sha256(self, claim: Claim) -> str:
        """The SHA-256 of the claimed file's bytes (OSError as the system raises it)."""
        ...

    def archive(self, claim: Claim, day: date) -> Path:
        """Move the claim to the archive of `day`; returns where it went."""
        ...

    def quarantine(self, claim: Claim, report: Mapping[str, object]) -> Path:
        """Store the report, then move the claim to quarantine beside it; returns the file's new path."""
        ...

    def set_aside(self, claim: Claim, report: Mapping[str, object]) -> Path:
        """Quarantine an entry `unsafe` refused without opening it; returns its new path."""
        ...


class Outbox(Protocol):
    """The outbound folder, as the writer's exactly-once protocol uses it (bridge/outbound/writer.py): write a
    hidden temporary file, give it its final name without ever overwriting, remove the temporary name, sync.
    Faults raise StorageError."""

    @property
    def folder(self) -> Path:
        """The outbound folder: every name below is a name in it."""
        ...

    def taken(self, path: Path) -> bool:
        """Whether something (a file, a link, anything) has this name."""
        ...

    def write_synced(self, path: Path, data: bytes) -> None:
        """Create `path` (never an existing one) with `data`, durably (fsynced)."""
        ...

    def link(self, tmp: Path, path: Path) -> bool:
        """Give `tmp`'s bytes the name `path` as well; False, changing nothing, when `path` is taken."""
        ...

    def remove(self, path: Path) -> None:
        """Remove a name; nothing when it is not there."""
        ...

    def sha256(self, path: Path) -> str | None:
        """The SHA-256 of the file's bytes, or None when it is not there."""
        ...

    def sync(self) -> None:
        """Make the folder's names durable (fsync the folder)."""
        ...


class Watcher(Protocol):
    """The inbound folder's watcher: the dropped files that are complete (stable), once each until forgotten."""

    def start(self) -> None:
        """Start watching (and list what is already there)."""
        ...

    def stop(self) -> None:
        """Stop watching."""
        ...

    def ready_files(self, timeout: float) -> list[Path]:
        """The files ready to be claimed, waiting up to `timeout` seconds for one."""
        ...

    def pending(self) -> list[Path]:
        """The files seen but not ready yet (the backlog)."""
        ...

    def forget(self, path: Path) -> None:
        """The file was taken (or is gone): stop tracking it."""
        ...

    def give_back(self, paths: Iterable[Path]) -> None:
        """Ready files that were not taken: offer them again next time."""
        ...
