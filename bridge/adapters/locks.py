"""POSIX record locks (fcntl) on a file: how two bridges on shared storage take turns, and how a daemon keeps a
folder to itself.

Why fcntl locks: the kernel drops them when their process dies (a SIGKILL cannot leave a stale lock behind), and
NFSv4 (or NFSv3 with NLM) carries them to the server, so they hold between hosts; flock(2) only does on some NFS
clients. Two properties of POSIX locks are covered here: they belong to the process (two threads would both get one,
so a process-wide thread lock orders them first), and closing any descriptor of the file drops the process's lock
(so each lock file is opened only here, and closed only when its lock is let go).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from bridge.errors import StorageError

_thread_locks: dict[Path, threading.Lock] = {}
_registry_lock = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _registry_lock:
        return _thread_locks.setdefault(path, threading.Lock())


def _open(path: Path, mode: int) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise StorageError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def exclusive(path: Path, mode: int = 0o640) -> Iterator[None]:
    """Hold the exclusive lock of `path` (created if missing) for the block, waiting for it: against other
    processes, on this host or another sharing the storage, and against this process's other threads."""
    path = Path(path)
    with _thread_lock(path):
        fd = _open(path, mode)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise StorageError(f"cannot lock {path}: {exc.strerror or exc}") from exc
            yield
        finally:
            os.close(fd)  # releases the lock


class HeldLock:
    """A lock kept for a daemon's lifetime (`release` or the process's end lets it go)."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def try_hold(path: Path, mode: int = 0o640) -> HeldLock | str:
    """Take the exclusive lock of `path` without waiting and write who holds it into the file; returns the lock, or
    who holds it already ("pid 123 on host-b") when another process does. This process asking twice gets it twice
    (POSIX locks are the process's)."""
    path = Path(path)
    fd = _open(path, mode)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "an unknown process"
        except OSError:
            holder = "an unknown process"
        os.close(fd)
        return holder
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise StorageError(f"cannot write the lock file {path}: {exc.strerror or exc}") from exc
    return HeldLock(path, fd)
