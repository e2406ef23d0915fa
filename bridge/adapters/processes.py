"""Child processes for the stages that cost the most CPU, so that they use the other cores: the generic plumbing.

The inbound build workers (bridge/inbound/workers.py) and the outbound check workers (bridge/outbound/workers.py)
each run in a `ChildProcess`: a fresh interpreter (`python -m bridge.adapters.processes`) that inherits no thread,
lock or socket, joined to the daemon by a socket pair. Its first message names the function that serves it
(`module:function`) and the plain values that function builds its chain from (definitions folder, rules document,
severities, key bytes ...): the child composes nothing from the configuration itself.

The daemon sees a child die (WorkerError, retried like a broker outage) or fall silent for `SILENCE` seconds (ended,
to retry); if the daemon dies, the child reads the end of its pipe and exits.
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bridge.errors import WorkerError

SILENCE = 120.0  # seconds without a word from a busy worker: it is stuck (a batch takes milliseconds)

_live: weakref.WeakSet[ChildProcess] = weakref.WeakSet()  # started and not closed, for the metrics
_live_lock = threading.Lock()


def live_children() -> list[tuple[str, int]]:
    """(role, pid) of every worker process this process started and has not ended (the metrics' CPU and memory)."""
    with _live_lock:
        children = list(_live)
    return [(child.role, pid) for child in children if (pid := child.pid) is not None]


class ChildProcess:
    """One worker process (`python -m bridge.adapters.processes`) and the daemon's end of its pipe.

    `target` ("module:function") serves the process from `values`, plain picklable values (see the module's doc);
    `log` is the (level, format) the child logs with."""

    def __init__(self, role: str, target: str, values: object, log: tuple[str, str]) -> None:
        self.role = role  # "build" or "check": named in errors
        self._target = target
        self._values = values
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._poller: select.poll | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process now (it loads the definitions, rules and keys it needs while the daemon goes on).

        A fresh interpreter rather than multiprocessing's fork (which would copy the locks of the daemon's threads
        mid-use) or spawn (which re-runs the caller's main module)."""
        ours, theirs = socket.socketpair()
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)  # a few runs ahead (capped by wmem_max)
        home = str(Path(__file__).resolve().parents[2])  # this very package, installed or not, whatever the cwd
        path = os.pathsep.join(filter(None, [home, os.environ.get("PYTHONPATH")]))
        with theirs:
            process = subprocess.Popen([sys.executable, "-m", "bridge.adapters.processes", str(theirs.fileno())],
                                       pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                       env={**os.environ, "PYTHONPATH": path})
        self._process, self._conn = process, Connection(ours.detach())
        with _live_lock:
            _live.add(self)
        self._poller = select.poll()  # `ready` is asked between two deliveries: a standing poll set costs ~1 µs,
        self._poller.register(self._conn.fileno(), select.POLLIN)  # Connection.poll(0) builds a selector each time
        self.send(("start", self._target, self._log, self._values))

    def send(self, message: tuple[object, ...]) -> None:
        assert self._conn is not None
        try:
            self._conn.send(message)
        except OSError as exc:
            raise self._lost(exc) from None

    def ready(self) -> bool:
        """Whether an answer (or the end of the pipe) can be received without waiting."""
        assert self._poller is not None
        return bool(self._poller.poll(0))

    def receive(self) -> tuple[str, Any]:
        """The next answer; WorkerError when the process died or said nothing for `SILENCE` seconds."""
        if self._conn is None:
            raise WorkerError(f"the {self.role} worker process was ended")
        try:
            if not self._conn.poll(SILENCE):
                self.close(graceful=False)
                raise WorkerError(f"the {self.role} worker process sent nothing for {SILENCE:g} s: ended, to retry")
            return self._conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError) as exc:
            raise self._lost(exc) from None

    def close(self, *, graceful: bool = True) -> None:
        """Stop the process (after its current job when graceful; at once otherwise). Safe to call twice."""
        process, conn = self._process, self._conn
        self._process = self._conn = self._poller = None
        with _live_lock:
            _live.discard(self)
        if process is None:
            return
        if graceful and conn is not None:
            try:
                conn.send(("stop",))
                process.wait(2.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if process.poll() is None:  # it ignores SIGTERM (see `serve`): it is ended by message or by SIGKILL
            process.kill()
            process.wait()
        if conn is not None:
            conn.close()

    def _lost(self, exc: BaseException) -> WorkerError:
        process = self._process
        code = None
        if process is not None:
            try:
                code = process.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
        self.close(graceful=False)
        return WorkerError(f"the {self.role} worker process ended unexpectedly (exit code {code}): "
                           f"{type(exc).__name__}")


def serve(conn: Connection) -> None:
    """The child process: the function that serves it and its values, then that function until it returns."""
    # A ^C reaches the whole process group, and systemd may signal the whole cgroup: the daemon decides when the worker
    # ends (it finishes the job in hand first), by a message, by closing the pipe, or by SIGKILL.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        kind, target, (level, form), values = conn.recv()
    except (EOFError, OSError):
        return
    assert kind == "start" and isinstance(target, str)
    from bridge.logs import configure_logging

    configure_logging(level, form)
    module, _, function = target.partition(":")
    getattr(importlib.import_module(module), function)(conn, values)


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
