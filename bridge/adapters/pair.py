"""What the two daemons of an active/standby pair share about outbound files, in one folder on their shared storage
(`outbound.shared_state`), so that neither writes a file twice nor reuses a file identifier (docs/operations.md,
"An active/standby pair").

    <shared>/lock            the pair's lock: a writer holds it from choosing a file's identifier to its link
    <shared>/counters.json   {"identifiers": {sender: last number}, "records": last record number}
    <shared>/written/<n>.pending.json   a file about to be linked into the outbound folder: its final name,
                                        temporary name, SHA-256 and event keys
    <shared>/written/<n>.json           the same once the file is in place

Each daemon keeps its own ledger; the records tell it what the other one wrote. A writer records a file *pending*
before it links it and *done* after; whoever takes the lock next and finds a pending record knows that its writer
died in between (the writer holds the lock throughout), so the final name tells the truth: holding the recorded bytes,
the file was written (the record is marked done); otherwise the record and its temporary file are removed and the
events are written again. Records older than RETENTION_SECONDS are removed: they only matter for deliveries that
come back unacknowledged, within moments of a writer's death.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from bridge.adapters.locks import exclusive
from bridge.adapters.spool.files import make_folders, remove_if_present, sha256_if_present, write_atomic
from bridge.errors import StorageError
from bridge.ports import SharedFile

log = structlog.get_logger("dtn_bridge.pair")

RETENTION_SECONDS = 7 * 86400
_PRUNE_EVERY = 3600.0
_PENDING = ".pending.json"
_DONE = ".json"

EventKey = tuple[str, str]


class SharedOutbound:
    """The shared folder of a pair; one per daemon (per outbound writer)."""

    def __init__(self, folder: Path, outbound: Path, *, file_mode: int = 0o640, dir_mode: int = 0o750,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self.outbound = Path(outbound)
        self.records = self.folder / "written"
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.clock = clock
        self._seen_upto: int | None = None  # record numbers up to this one were read (None: none yet)
        self._mine: set[int] = set()
        self._pruned_at = float("-inf")

    @contextlib.contextmanager
    def session(self) -> Iterator[SharedSession]:
        """The pair's lock, held for the block (waiting for the other daemon to finish its file)."""
        make_folders(self.records, self.dir_mode)
        with exclusive(self.folder / "lock", self.file_mode):
            yield SharedSession(self, _read_object(self.folder / "counters.json", "counters") or {})


class SharedSession:
    """Under the pair's lock: read what the other daemon wrote, allocate identifiers, record a file."""

    def __init__(self, shared: SharedOutbound, counters: dict[str, object]) -> None:
        self._shared = shared
        identifiers = counters.get("identifiers", {})
        self._identifiers: dict[str, int] = dict(identifiers) if isinstance(identifiers, dict) else {}
        records = counters.get("records", 0)
        self._records = records if isinstance(records, int) else 0

    def news(self) -> list[SharedFile]:
        """Files recorded since this process last looked (all of them the first time), but those it finished
        itself; a pending record (its writer died, or failed, before marking it) is settled first by what the
        outbound folder holds."""
        shared = self._shared
        self._prune()
        found: list[SharedFile] = []
        if shared._seen_upto is None:
            numbers = sorted({n for n in map(_number, _listing(shared.records)) if n is not None})
        else:
            numbers = list(range(shared._seen_upto + 1, self._records + 1))
        for number in numbers:
            if number in shared._mine:
                continue
            record = self._settled(number)
            if record is not None:
                found.append(record)
        shared._seen_upto = max([self._records, *numbers])
        return found

    def next_identifier(self, sender: str, at_least: int) -> int:
        """The pair's next file identifier number of `sender`: above every one either daemon took, and at least
        `at_least` (the daemon's own counter, so that a daemon that ran alone before never goes back)."""
        number = max(self._identifiers.get(sender, 0) + 1, at_least)
        self._identifiers[sender] = number  # saved by `begin`: a number no file took may be taken again
        return number

    def identifiers(self) -> dict[str, int]:
        """The last file identifier number the pair took, by sender."""
        return dict(self._identifiers)

    def begin(self, name: str, tmp_name: str, sha256: str, events: list[EventKey]) -> int:
        """Record a file as pending before it is linked; returns its record number."""
        self._records += 1
        number = self._records
        self._save()
        body = {"name": name, "tmp": tmp_name, "sha256": sha256, "events": [list(key) for key in events],
                "writer": os.getpid(), "recorded_at": self._shared.clock()}
        write_atomic(self._path(number, _PENDING), json.dumps(body).encode(), mode=self._shared.file_mode)
        return number

    def finish(self, number: int) -> None:
        """The file of record `number` is in place under its final name."""
        _rename(self._path(number, _PENDING), self._path(number, _DONE))
        self._shared._mine.add(number)  # its events are in this daemon's ledger already

    def drop(self, number: int) -> None:
        """The file of record `number` never reached its final name: forget the record."""
        remove_if_present(self._path(number, _PENDING))

    # -- inside --

    def _settled(self, number: int) -> SharedFile | None:
        done, pending = self._path(number, _DONE), self._path(number, _PENDING)
        body = _read_object(done, "record")
        if body is not None:
            return _shared_file(number, body, done)
        body = _read_object(pending, "record")
        if body is None:
            return None  # rolled back by its writer, or pruned
        record = _shared_file(number, body, pending)
        placed = self._shared.outbound / record.name
        in_place = sha256_if_present(placed) == record.sha256
        tmp = body.get("tmp")
        if isinstance(tmp, str) and "/" not in tmp and tmp.startswith("."):
            remove_if_present(self._shared.outbound / tmp)
        log.info("pair_record_settled", outcome="written" if in_place else "rolled_back", path=str(placed),
                 events=len(record.events))
        if in_place:
            _rename(pending, done)
            return record
        remove_if_present(pending)
        return None

    def _prune(self) -> None:
        shared = self._shared
        now = shared.clock()
        if now - shared._pruned_at < _PRUNE_EVERY:
            return
        shared._pruned_at = now
        limit = now - RETENTION_SECONDS
        for name in _listing(shared.records):
            if not name.endswith(_DONE) or name.endswith(_PENDING):
                continue
            path = shared.records / name
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < limit:
                    remove_if_present(path)

    def _save(self) -> None:
        body = {"identifiers": self._identifiers, "records": self._records}
        write_atomic(self._shared.folder / "counters.json", json.dumps(body, sort_keys=True).encode(),
                     mode=self._shared.file_mode)

    def _path(self, number: int, suffix: str) -> Path:
        return self._shared.records / f"{number:012d}{suffix}"


# ---------------------------------------------------------------------------------------------------- helpers


def _read_object(path: Path, what: str) -> dict[str, object] | None:
    """The JSON object in `path` (`what`: "counters", "record", for the error), or None when there is no file."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read the pair's {what} {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise StorageError(f"the pair's {what} {path} is not a JSON object")
    return data


def _shared_file(number: int, body: dict[str, object], path: Path) -> SharedFile:
    name, sha256, events = body.get("name"), body.get("sha256"), body.get("events")
    if not isinstance(name, str) or not isinstance(sha256, str) or not isinstance(events, list) \
            or "/" in name or name.startswith("."):
        raise StorageError(f"the pair's record {path} is not one this bridge writes")
    keys: list[EventKey] = []
    for key in events:
        if not (isinstance(key, list) and len(key) == 2 and all(isinstance(part, str) for part in key)):
            raise StorageError(f"the pair's record {path} holds an event key that is not [source, id]")
        keys.append((key[0], key[1]))
    return SharedFile(number, name, sha256, tuple(keys))


def _number(name: str) -> int | None:
    stem = name.removesuffix(_PENDING).removesuffix(_DONE)
    return int(stem) if stem.isdigit() and stem != name else None


def _listing(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot list {folder}: {exc.strerror or exc}") from exc


def _rename(src: Path, target: Path) -> None:
    try:
        os.rename(src, target)
    except OSError as exc:
        raise StorageError(f"cannot rename {src} to {target.name}: {exc.strerror or exc}") from exc
