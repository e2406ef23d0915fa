"""Tests of bridge.adapters.watcher: the stability rule (fake clock) and the folder watcher (real folders)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog.testing

from bridge.adapters.watcher import DropWatcher, FileSignature, StabilityTracker
from bridge.errors import StorageError

STABLE = 0.3


def sig(size: int, mtime: int = 1, inode: int = 7) -> FileSignature:
    return FileSignature(size=size, mtime_ns=mtime, inode=inode, device=1)


class TestStabilityTracker:
    def test_ready_after_stable_seconds(self) -> None:
        """A file is ready once the same signature was seen stable_seconds apart, and only once."""
        tracker = StabilityTracker(2.0)
        path = Path("/in/a")
        tracker.observe(path, sig(10), now=0.0)
        assert tracker.ready() == []
        tracker.observe(path, sig(10), now=1.9)
        assert tracker.ready() == []
        tracker.observe(path, sig(10), now=2.0)
        assert tracker.ready() == [path]
        tracker.observe(path, sig(10), now=3.0)
        assert tracker.ready() == []

    def test_time_alone_is_not_enough(self) -> None:
        """Without a fresh observation after stable_seconds nothing is ready (stability must be confirmed)."""
        tracker = StabilityTracker(1.0)
        tracker.observe(Path("/in/a"), sig(10), now=0.0)
        assert tracker.ready() == [] and tracker.next_due() == 1.0

    def test_growing_file_restarts_the_clock(self) -> None:
        """Every change of size or mtime restarts the stability window."""
        tracker = StabilityTracker(1.0)
        path = Path("/in/a")
        for step in range(10):  # appended every 0.5 s
            tracker.observe(path, sig(step, mtime=step), now=step * 0.5)
            assert tracker.ready() == []
        tracker.observe(path, sig(9, mtime=9), now=4.5 + 0.9)
        assert tracker.ready() == []
        tracker.observe(path, sig(9, mtime=9), now=4.5 + 1.0)
        assert tracker.ready() == [path]

    def test_mtime_change_counts(self) -> None:
        """A rewrite of the same size (mtime changed) is a change."""
        tracker = StabilityTracker(1.0)
        path = Path("/in/a")
        tracker.observe(path, sig(5, mtime=1), now=0.0)
        tracker.observe(path, sig(5, mtime=2), now=1.0)
        assert tracker.ready() == []

    def test_close_is_not_enough(self) -> None:
        """A close-after-write does not make a file ready: stability always applies."""
        tracker = StabilityTracker(1.0)
        path = Path("/in/a")
        tracker.observe(path, sig(5), now=0.0)
        tracker.mark_closed(path)
        tracker.observe(path, sig(5), now=0.5)
        assert tracker.is_closed(path) and tracker.ready() == []
        tracker.observe(path, sig(6), now=0.6)
        assert not tracker.is_closed(path)

    def test_renamed_file_is_ready_at_once(self) -> None:
        """A file renamed into the folder is complete as observed: no stability wait."""
        tracker = StabilityTracker(2.0)
        path = Path("/in/a")
        tracker.observe(path, sig(10), now=0.0)
        tracker.mark_renamed(path)
        assert tracker.next_due() == 0.0
        assert tracker.ready() == [path]
        assert tracker.ready() == []

    def test_written_after_rename_waits_for_stability(self) -> None:
        """A change after the rename voids it: the file is only ready once stable again."""
        tracker = StabilityTracker(1.0)
        path = Path("/in/a")
        tracker.observe(path, sig(10), now=0.0)
        tracker.mark_renamed(path)
        tracker.observe(path, sig(11, mtime=2), now=0.1)
        assert tracker.ready() == []
        tracker.observe(path, sig(11, mtime=2), now=1.1)
        assert tracker.ready() == [path]

    def test_arrival_order(self) -> None:
        """Ready files come ordered by first seen, then mtime, then name."""
        tracker = StabilityTracker(1.0)
        files = {
            "late": (sig(1, mtime=1, inode=1), 2.0),
            "b": (sig(1, mtime=50, inode=2), 1.0),
            "a": (sig(1, mtime=50, inode=3), 1.0),
            "old": (sig(1, mtime=10, inode=4), 1.0),
        }
        for name, (signature, seen_at) in files.items():
            tracker.observe(Path(f"/in/{name}"), signature, now=5.0, seen_at=seen_at)
        for name, (signature, _) in files.items():
            tracker.observe(Path(f"/in/{name}"), signature, now=6.0)
        assert [p.name for p in tracker.ready()] == ["old", "a", "b", "late"]

    def test_vanished_file_is_dropped(self) -> None:
        """A file that disappears stops being tracked."""
        tracker = StabilityTracker(0.0)
        tracker.observe(Path("/in/a"), sig(1), now=0.0)
        tracker.observe(Path("/in/a"), None, now=0.1)
        assert tracker.ready() == [] and tracker.tracked() == set()

    def test_replaced_file_is_new(self) -> None:
        """A new inode under a returned name is a new arrival, returned again once stable."""
        tracker = StabilityTracker(1.0)
        path = Path("/in/a")
        tracker.observe(path, sig(1, inode=1), now=0.0)
        tracker.observe(path, sig(1, inode=1), now=1.0)
        assert tracker.ready() == [path]
        tracker.observe(path, sig(1, inode=2), now=2.0)
        assert tracker.ready() == []
        tracker.observe(path, sig(1, inode=2), now=3.0)
        assert tracker.ready() == [path]

    def test_changed_after_delivery_is_returned_again(self) -> None:
        """A returned file that changes (still unclaimed) is returned again once stable."""
        tracker = StabilityTracker(1.0)
        path = Path("/in/a")
        tracker.observe(path, sig(1), now=0.0)
        tracker.observe(path, sig(1), now=1.0)
        assert tracker.ready() == [path] and tracker.pending() == []
        tracker.observe(path, sig(2, mtime=2), now=2.0)
        assert tracker.pending() == [path]
        tracker.observe(path, sig(2, mtime=2), now=3.0)
        assert tracker.ready() == [path]

    def test_given_back_is_returned_again(self) -> None:
        """A returned file the consumer did not take (it stopped for a reload) is returned by the next call, once."""
        tracker = StabilityTracker(0.0)
        first, second = Path("/in/a"), Path("/in/b")
        tracker.observe(first, sig(1), now=0.0)
        tracker.observe(second, sig(2), now=0.5)
        assert tracker.ready() == [first, second] and tracker.ready() == []
        tracker.give_back(second)
        tracker.give_back(Path("/in/never-seen"))  # not tracked: nothing to give back
        assert tracker.ready() == [second] and tracker.ready() == []

    def test_forget(self) -> None:
        """A forgotten path is no longer tracked."""
        tracker = StabilityTracker(0.0)
        tracker.observe(Path("/in/a"), sig(1), now=0.0)
        tracker.forget(Path("/in/a"))
        assert tracker.ready() == [] and tracker.next_due() is None


# ------------------------------------------------------------------------------------------- DropWatcher


class SilentObserver:
    """An observer that never reports anything: every event is 'lost'."""

    def schedule(self, event_handler: object, path: str, recursive: bool = False) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def inbound(tmp_path: Path) -> Path:
    folder = tmp_path / "inbound"
    folder.mkdir()
    return folder


@pytest.fixture(params=["inotify", "polling"])
def watcher(request: pytest.FixtureRequest, inbound: Path) -> Iterator[DropWatcher]:
    with DropWatcher(inbound, mode=request.param, stable_seconds=STABLE, poll_interval=0.1) as started:
        yield started


def collect(watcher: DropWatcher, count: int, timeout: float = 5.0) -> list[Path]:
    """Files returned until `count` arrived or the timeout passed."""
    found: list[Path] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        found += watcher.ready_files(timeout=deadline - time.monotonic())
    return found


class TestDropWatcher:
    def test_detects_new_file(self, watcher: DropWatcher, inbound: Path) -> None:
        """A file dropped after start is returned once it is stable."""
        path = inbound / "D0010002.usr"
        started = time.monotonic()
        path.write_bytes(b"ZHV|...")
        assert collect(watcher, 1) == [path]
        assert time.monotonic() - started >= STABLE
        assert watcher.ready_files(timeout=0.5) == []  # returned once

    def test_ignores_temp_patterns(self, watcher: DropWatcher, inbound: Path) -> None:
        """Names matching the ignore patterns are never returned."""
        for name in ("a.tmp", "b.part", ".hidden", "~lock", "c.filepart"):
            (inbound / name).write_bytes(b"x")
        (inbound / "real.usr").write_bytes(b"x")
        assert collect(watcher, 1) == [inbound / "real.usr"]
        assert watcher.ready_files(timeout=STABLE * 2) == []

    def test_ignores_folders(self, watcher: DropWatcher, inbound: Path) -> None:
        """Sub-folders are not files."""
        (inbound / "sub").mkdir()
        (inbound / "sub" / "deep.usr").write_bytes(b"x")
        assert watcher.ready_files(timeout=STABLE * 3) == []

    def test_a_symbolic_link_is_skipped_with_a_reason_once(self, watcher: DropWatcher, inbound: Path,
                                                           tmp_path: Path) -> None:
        """Issue 14: a link (or a pipe) is never returned; the log says why, once while it stays."""
        (tmp_path / "outside.usr").write_bytes(b"outside")
        with structlog.testing.capture_logs() as logs:
            (inbound / "link.usr").symlink_to(tmp_path / "outside.usr")
            os.mkfifo(inbound / "pipe.usr")
            (inbound / "real.usr").write_bytes(b"x")
            assert collect(watcher, 1) == [inbound / "real.usr"]
            watcher._rescan(time.monotonic())  # a rescan finds them again: said once all the same
            assert watcher.ready_files(timeout=STABLE * 2) == []
        skipped = sorted(entry["file"] for entry in logs if entry["event"] == "file_skipped")
        assert skipped == ["link.usr", "pipe.usr"]

    def test_rename_into_place_is_seen(self, watcher: DropWatcher, inbound: Path) -> None:
        """The gateway's write-temp-then-rename pattern delivers the final name only."""
        tmp = inbound / "x.usr.tmp"
        tmp.write_bytes(b"data")
        tmp.rename(inbound / "x.usr")
        assert collect(watcher, 1) == [inbound / "x.usr"]

    @pytest.mark.parametrize("from_outside", [False, True])
    def test_renamed_file_is_returned_without_the_stability_wait(
        self, inbound: Path, tmp_path: Path, from_outside: bool
    ) -> None:
        """inotify: a rename into the folder (from a temp name, or a move from another folder) ends the writing."""
        tmp = (tmp_path / "staging.usr") if from_outside else (inbound / ".x.usr")
        tmp.write_bytes(b"data")
        with DropWatcher(inbound, stable_seconds=5.0, poll_interval=0.1) as watcher:
            started = time.monotonic()
            tmp.rename(inbound / "x.usr")
            assert collect(watcher, 1, timeout=3.0) == [inbound / "x.usr"]
            assert time.monotonic() - started < 2.0

    def test_trust_renames_off_waits(self, inbound: Path) -> None:
        """With trust_renames false a renamed file waits stable_seconds like any other."""
        with DropWatcher(inbound, stable_seconds=1.0, poll_interval=0.1, trust_renames=False) as watcher:
            (inbound / ".x.usr").write_bytes(b"data")
            started = time.monotonic()
            (inbound / ".x.usr").rename(inbound / "x.usr")
            assert collect(watcher, 1, timeout=4.0) == [inbound / "x.usr"]
            assert time.monotonic() - started >= 1.0

    def test_waits_for_slowly_written_file(self, inbound: Path) -> None:
        """A file appended every 0.5 s is not returned until it stops changing for stable_seconds."""
        path = inbound / "slow.usr"
        appended_at: list[float] = []

        def writer() -> None:
            with path.open("ab") as handle:
                for n in range(4):
                    if n:
                        time.sleep(0.5)  # the scenario: a slow writer, each pause shorter than stable_seconds
                    handle.write(f"line {n}\n".encode())
                    handle.flush()
                    appended_at.append(time.monotonic())

        with DropWatcher(inbound, stable_seconds=1.0, poll_interval=0.1) as watcher:
            thread = threading.Thread(target=writer)
            thread.start()
            try:
                found = collect(watcher, 1, timeout=6.0)
                returned_at = time.monotonic()
                content = path.read_bytes()
            finally:
                thread.join()
        assert found == [path]
        assert content.count(b"\n") == 4  # complete when returned
        assert returned_at - appended_at[-1] >= 1.0

    def test_finds_files_present_at_start(self, inbound: Path) -> None:
        """Files already in the folder at start are found, in mtime order."""
        for n, name in enumerate(["z.usr", "a.usr", "m.usr"]):
            (inbound / name).write_bytes(b"x")
            os.utime(inbound / name, ns=(n * 10**9, n * 10**9))
        with DropWatcher(inbound, stable_seconds=STABLE, poll_interval=0.1) as watcher:
            assert collect(watcher, 3) == [inbound / "z.usr", inbound / "a.usr", inbound / "m.usr"]

    def test_arrival_order_of_a_sequence(self, watcher: DropWatcher, inbound: Path) -> None:
        """Files dropped one after another are returned in that order, whatever their names."""
        names = ["c.usr", "a.usr", "b.usr"]
        for name in names:
            (inbound / name).write_bytes(b"x")
            time.sleep(0.05)  # the scenario: one after another, at distinct moments (the order is what is tested)
        found = collect(watcher, 3)
        if watcher.mode == "inotify":  # polling sees them within one tick: same first-seen, then mtime
            assert [p.name for p in found] == names
        assert sorted(p.name for p in found) == sorted(names)

    def test_polling_mode_works(self, inbound: Path) -> None:
        """Polling mode (no inotify) finds a new file through the polling observer."""
        with DropWatcher(inbound, mode="polling", stable_seconds=STABLE, poll_interval=0.1) as watcher:
            assert watcher.ready_files(timeout=0.2) == []
            (inbound / "p.usr").write_bytes(b"x")
            assert collect(watcher, 1) == [inbound / "p.usr"]

    def test_rescan_finds_file_when_events_are_lost(self, inbound: Path) -> None:
        """With an observer that reports nothing, the periodic rescan still finds a new file."""
        with DropWatcher(
            inbound,
            stable_seconds=STABLE,
            rescan_seconds=0.3,
            poll_interval=0.1,
            observer_factory=SilentObserver,
        ) as watcher:
            assert watcher.ready_files(timeout=0.2) == []
            (inbound / "missed.usr").write_bytes(b"x")
            assert collect(watcher, 1, timeout=3.0) == [inbound / "missed.usr"]

    def test_rescan_after_real_observer_stopped(self, inbound: Path) -> None:
        """With the inotify observer stopped (events missed), the rescan still finds the file."""
        watcher = DropWatcher(inbound, stable_seconds=STABLE, rescan_seconds=0.3, poll_interval=0.1)
        watcher.start()
        try:
            observer = watcher._observer
            assert observer is not None
            observer.stop()
            observer.join(timeout=5)
            (inbound / "missed.usr").write_bytes(b"x")
            assert collect(watcher, 1, timeout=3.0) == [inbound / "missed.usr"]
        finally:
            watcher.stop()

    def test_claimed_file_is_not_returned(self, watcher: DropWatcher, inbound: Path) -> None:
        """A file that disappears before it is stable (another instance claimed it) is not returned."""
        path = inbound / "gone.usr"
        path.write_bytes(b"x")
        time.sleep(0.05)  # the scenario: the file exists a moment (for the watcher to see it), less than stable
        path.unlink()
        assert watcher.ready_files(timeout=STABLE * 3) == []

    def test_timeout_is_bounded(self, watcher: DropWatcher) -> None:
        """With nothing to return, ready_files returns [] close to its timeout."""
        started = time.monotonic()
        assert watcher.ready_files(timeout=0.3) == []
        assert 0.25 <= time.monotonic() - started < 1.5

    def test_missing_folder_is_storage_error(self, tmp_path: Path) -> None:
        """Watching a folder that does not exist fails at start."""
        with pytest.raises(StorageError):
            DropWatcher(tmp_path / "nope").start()

    def test_bad_mode(self, inbound: Path) -> None:
        """An unknown mode is refused."""
        with pytest.raises(ValueError):
            DropWatcher(inbound, mode="fanotify")

    def test_stop_is_idempotent(self, inbound: Path) -> None:
        """stop() may be called twice, and start() twice is refused."""
        watcher = DropWatcher(inbound, stable_seconds=STABLE)
        watcher.start()
        with pytest.raises(RuntimeError):
            watcher.start()
        watcher.stop()
        watcher.stop()
