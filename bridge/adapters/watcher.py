"""Notice complete files in the DTN gateway's inbound folder.

A file is *ready* when it is a regular file, its name matches none of the ignore patterns, and either

* it was renamed into the folder (`trust_renames`, the default) and has not changed since: writing under a temporary
  name and renaming is how gateways publish a finished file, so the rename is the end of writing and waiting longer
  only adds latency; or
* its size, mtime and inode stayed the same across observations spanning `stable_seconds` (files written in place,
  moves the observer could not pair, polling, or `trust_renames: false` for a gateway that writes after renaming).

inotify's close-after-write is only a prompt to look again (a gateway may open, append and close a file many times),
and a polling observer sees no closes at all.

Events come from watchdog (inotify, or a polling observer for network filesystems where inotify sees nothing), and a
full rescan every `rescan_seconds` catches what events miss (inotify queue overflows drop events silently; files
present at start are found by the first scan). Ready files are returned ordered by arrival — first seen, then mtime,
then name — so the files of one sender keep their order. Each file is returned once while it stays unchanged; if it
is still there and changes afterwards it is returned again once stable.

The decision logic is `StabilityTracker`, pure and driven by the caller's clock, so it is tested with a fake clock.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

import structlog
from watchdog.events import (
    FileClosedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

try:
    from watchdog.observers.inotify import InotifyObserver
    from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
except ImportError:  # not Linux: the platform's observer, where a move from elsewhere may look like a creation
    InotifyObserver = None  # type: ignore[assignment,misc]
    InotifyMoveEventGrouper = None  # type: ignore[assignment,misc]

from bridge.adapters.spool import stored_name
from bridge.config import DEFAULT_IGNORE
from bridge.errors import StorageError

log = structlog.get_logger("dtn_bridge.watcher")

__all__ = ["DEFAULT_IGNORE", "DropWatcher", "FileSignature", "ObserverLike", "StabilityTracker"]


@dataclass(frozen=True, slots=True)
class FileSignature:
    """What must stay the same for a file to count as stable."""

    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileSignature:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


@dataclass(slots=True)
class _Entry:
    signature: FileSignature
    first_seen: float
    changed_at: float  # when the current signature was first observed
    checked_at: float  # when it was last confirmed
    closed: bool = False
    renamed: bool = False  # renamed into the folder and unchanged since: complete without waiting
    delivered: bool = False


class StabilityTracker:
    """Pure stability bookkeeping: feed it observations with a time, ask which files are ready.

    `observe(path, sig, now)` records a stat (None: the file is gone). A file is ready once the same signature was
    observed at two times at least `stable_seconds` apart, or at once after `mark_renamed` while its signature stays
    the one observed then; `ready()` returns such files once, in arrival order.
    """

    def __init__(self, stable_seconds: float) -> None:
        if stable_seconds < 0:
            raise ValueError("stable_seconds must be >= 0")
        self.stable_seconds = stable_seconds
        self._entries: dict[Path, _Entry] = {}

    def observe(
        self, path: Path, signature: FileSignature | None, now: float, *, seen_at: float | None = None
    ) -> None:
        """Record a stat of `path` made at `now`; `seen_at` is when it was first noticed (an event's time)."""
        if signature is None:
            self._entries.pop(path, None)
            return
        entry = self._entries.get(path)
        if (
            entry is None
            or entry.signature.inode != signature.inode
            or entry.signature.device != signature.device
        ):
            first = min(seen_at, now) if seen_at is not None else now
            self._entries[path] = _Entry(signature, first_seen=first, changed_at=now, checked_at=now)
            return
        if entry.signature != signature:
            entry.signature = signature
            entry.changed_at = now
            entry.closed = False
            entry.renamed = False  # written to after the rename: only stability can tell when it ends
            entry.delivered = False  # changed after it was returned: return it again once stable
        entry.checked_at = max(entry.checked_at, now)

    def mark_closed(self, path: Path) -> None:
        """A close-after-write was seen (informational: stability still decides)."""
        entry = self._entries.get(path)
        if entry is not None:
            entry.closed = True

    def mark_renamed(self, path: Path) -> None:
        """The file was renamed into the folder after its last observation: it is complete as observed."""
        entry = self._entries.get(path)
        if entry is not None:
            entry.renamed = True

    def forget(self, path: Path) -> None:
        """Stop tracking `path` (it was claimed or removed)."""
        self._entries.pop(path, None)

    def give_back(self, path: Path) -> None:
        """`path` was returned by `ready()` but not taken: return it again."""
        entry = self._entries.get(path)
        if entry is not None:
            entry.delivered = False

    def ready(self) -> list[Path]:
        """Files stable for `stable_seconds` and not yet returned, in arrival order; marks them returned."""
        found = [
            (entry.first_seen, entry.signature.mtime_ns, path.name, path)
            for path, entry in self._entries.items()
            if not entry.delivered and (entry.renamed or entry.checked_at - entry.changed_at >= self.stable_seconds)
        ]
        found.sort(key=lambda item: item[:3])
        for *_, path in found:
            self._entries[path].delivered = True
        return [path for *_, path in found]

    def pending(self) -> list[Path]:
        """Tracked files not yet returned (they need another stat to prove stability)."""
        return [path for path, entry in self._entries.items() if not entry.delivered]

    def next_due(self) -> float | None:
        """The earliest time at which a pending file could be ready (None if nothing is pending)."""
        due = [e.changed_at + (0.0 if e.renamed else self.stable_seconds)
               for e in self._entries.values() if not e.delivered]
        return min(due) if due else None

    def tracked(self) -> set[Path]:
        """Every path tracked."""
        return set(self._entries)

    def is_closed(self, path: Path) -> bool:
        """Whether a close-after-write was seen since the last change."""
        entry = self._entries.get(path)
        return bool(entry and entry.closed)


class ObserverLike(Protocol):
    """The part of a watchdog observer the watcher uses (tests pass a silent one)."""

    def schedule(self, event_handler: FileSystemEventHandler, path: str, recursive: bool = ...) -> object: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = ...) -> None: ...


class DropWatcher:
    """Watches one folder (not recursively) and hands out complete files with `ready_files(timeout)`.

    Call from one consumer thread; watchdog's thread only queues paths. `start()` scans the folder, so files present
    at start are found.
    """

    def __init__(
        self,
        folder: Path,
        *,
        mode: str = "inotify",
        stable_seconds: float = 2.0,
        trust_renames: bool = True,
        rescan_seconds: float = 30.0,
        poll_interval: float = 1.0,
        ignore: Iterable[str] = DEFAULT_IGNORE,
        clock: Callable[[], float] = time.monotonic,
        observer_factory: Callable[[], ObserverLike] | None = None,
    ) -> None:
        if mode not in ("inotify", "polling"):
            raise ValueError(f"mode must be 'inotify' or 'polling', not {mode!r}")
        if rescan_seconds <= 0 or poll_interval <= 0:
            raise ValueError("rescan_seconds and poll_interval must be > 0")
        self.folder = Path(folder).absolute()
        self.mode = mode
        self.trust_renames = trust_renames
        self.rescan_seconds = rescan_seconds
        self.poll_interval = poll_interval
        self.ignore: tuple[str, ...] = tuple(ignore)
        self._clock = clock
        self._tracker = StabilityTracker(stable_seconds)
        self._observer_factory = observer_factory
        self._observer: ObserverLike | None = None
        self._cond = threading.Condition()
        self._queued: dict[Path, float] = {}  # path -> first event time, filled by watchdog's thread
        self._closed: set[Path] = set()
        self._renamed: set[Path] = set()
        self._next_rescan = 0.0
        self._skipped: set[Path] = set()  # entries that are not regular files, already logged

    # ------------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the observer, then scan the folder (events during the scan are not lost: they are queued)."""
        if self._observer is not None:
            raise RuntimeError("DropWatcher already started")
        if not self.folder.is_dir():
            raise StorageError(f"inbound folder {self.folder} does not exist or is not a folder")
        observer = self._make_observer()
        try:
            observer.schedule(_Handler(self), str(self.folder), recursive=False)
            observer.start()
        except OSError as exc:
            hint = (
                " (inotify watch or instance limit? try watch.mode: polling)"
                if self.mode == "inotify"
                else ""
            )
            raise StorageError(f"cannot watch {self.folder}: {exc.strerror or exc}{hint}") from exc
        self._observer = observer
        try:
            self._rescan(self._clock())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the observer thread; safe to call twice."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5.0)
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _make_observer(self) -> ObserverLike:
        if self._observer_factory is not None:
            return self._observer_factory()
        if self.mode == "polling":
            return PollingObserver(timeout=self.poll_interval)  # type: ignore[return-value]
        if InotifyObserver is not None:
            # watchdog holds every IN_MOVED_FROM (and every event behind it) for half a second to pair it with its
            # IN_MOVED_TO. A one-folder watcher needs no pairs: with full events an unpaired IN_MOVED_TO is still a
            # move into the folder. Without the hold a renamed file is seen at once instead of 0.5 s later.
            if InotifyMoveEventGrouper is not None and getattr(InotifyMoveEventGrouper, "delay", 0) != 0:
                InotifyMoveEventGrouper.delay = 0.0
            return InotifyObserver(generate_full_events=True)  # type: ignore[return-value]
        return Observer()  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------------- consume

    def ready_files(self, timeout: float) -> list[Path]:
        """Complete files, in arrival order; waits up to `timeout` seconds for at least one, else returns []."""
        deadline = self._clock() + max(timeout, 0.0)
        while True:
            now = self._clock()
            self._refresh(now)
            ready = self._tracker.ready()
            if ready:
                return ready
            if now >= deadline:
                return []
            wake = min(deadline, self._next_rescan, now + self.poll_interval)
            due = self._tracker.next_due()
            if due is not None:
                wake = min(wake, due)
            with self._cond:
                if not self._queued:
                    self._cond.wait(max(wake - now, 0.001))

    def forget(self, path: Path) -> None:
        """The consumer claimed (or gave up on) `path`; stop tracking it."""
        self._tracker.forget(Path(path))

    def give_back(self, paths: Iterable[Path]) -> None:
        """Files `ready_files` returned that the consumer did not take (it stopped for a reload): the next call
        returns them again, rather than never."""
        for path in paths:
            self._tracker.give_back(Path(path))

    def pending(self) -> list[Path]:
        """Files seen but not yet complete (the backlog gauge); call from the consuming thread."""
        return self._tracker.pending()

    def _refresh(self, now: float) -> None:
        """Apply queued events, rescan if due, and re-stat every pending file."""
        with self._cond:
            queued, self._queued = self._queued, {}
            closed, self._closed = self._closed, set()
            renamed, self._renamed = self._renamed, set()
        for path, seen_at in queued.items():
            self._observe(path, now, seen_at=seen_at)
        for path in renamed:  # after the stat above, so "unchanged since the rename" compares with it
            self._tracker.mark_renamed(path)
        if now >= self._next_rescan:
            self._rescan(now)
        for path in self._tracker.pending():
            if path not in queued:
                self._observe(path, now)
        for path in closed:
            self._tracker.mark_closed(path)

    def _rescan(self, now: float) -> None:
        """List the folder: new files join with this scan's time, vanished ones are dropped."""
        try:
            with os.scandir(self.folder) as it:
                names = [entry.name for entry in it]
        except OSError as exc:
            raise StorageError(f"cannot list inbound folder {self.folder}: {exc.strerror or exc}") from exc
        present = {self.folder / name for name in names if not self.ignored(name)}
        self._skipped &= present
        for path in self._tracker.tracked() - present:
            self._tracker.forget(path)
        for path in sorted(present - self._tracker.tracked()):
            self._observe(path, now)
        self._next_rescan = now + self.rescan_seconds

    def _observe(self, path: Path, now: float, *, seen_at: float | None = None) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._tracker.observe(path, None, now)
            return
        except OSError as exc:
            raise StorageError(f"cannot stat {path}: {exc.strerror or exc}") from exc
        signature = FileSignature.of(st) if stat.S_ISREG(st.st_mode) else None
        if signature is None and not stat.S_ISDIR(st.st_mode) and path not in self._skipped:
            self._skipped.add(path)  # said once while it stays (the rescan finds it again and again)
            log.warning("file_skipped", file=stored_name(path.name),
                        reason="not a regular file (a symbolic link, a device or a pipe): left where it is")
        self._tracker.observe(path, signature, now, seen_at=seen_at)

    def ignored(self, name: str) -> bool:
        """Whether a file name matches an ignore pattern (temp files the gateway is still writing)."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignore)

    # --------------------------------------------------------------------------------- from watchdog's thread

    def _queue(self, raw_paths: Sequence[str | bytes], *, closed: bool = False, renamed: str | bytes = "") -> None:
        now = self._clock()
        with self._cond:
            for raw in raw_paths:
                path = Path(os.fsdecode(raw))
                if path.parent != self.folder or self.ignored(path.name):
                    continue
                self._queued.setdefault(path, now)
                if closed:
                    self._closed.add(path)
                if renamed and raw == renamed and self.trust_renames:
                    self._renamed.add(path)
            self._cond.notify_all()


_NOISE = frozenset({"opened", "closed_no_write"})  # reads change nothing


class _Handler(FileSystemEventHandler):
    """Forwards file events to the watcher's queue; runs on watchdog's thread, so it does nothing else."""

    def __init__(self, watcher: DropWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in _NOISE:
            return
        paths = [event.src_path] if event.src_path else []
        renamed: str | bytes = ""
        if isinstance(event, FileSystemMovedEvent) and event.dest_path:
            paths.append(event.dest_path)
            renamed = event.dest_path
        self._watcher._queue(paths, closed=isinstance(event, FileClosedEvent), renamed=renamed)
