"""The inbound build stage in a worker process: a second core builds, governs and canonicalizes a file's events while
the daemon's process signs and publishes them.

    daemon process                                   worker (`python -m bridge.adapters.worker`: a new
                                                     interpreter; it inherits no thread, lock, socket or key)
    check -> job (path, first pass, SHA-256) ---->   second pass -> events -> governance -> canonical bytes
    sign -> publish  <---- batches of unsigned messages through a pipe, which blocks the worker while the publisher
                           is behind: memory stays bounded whatever the file's size

The worker holds no key and opens no connection: it reads the claimed file by its path. When the daemon stops taking
a file's messages early (the broker failed, a stop), the worker is ended and a fresh one serves the next file, so the
rest of one file can never be taken for the next. A worker that dies raises WorkerError, which the daemon retries like
a broker outage; if the daemon dies, the worker reads the end of its pipe and exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from bridge.config import BridgeConfig
from bridge.dtn.reader import ValidFile
from bridge.errors import FlowFileError, WorkerError
from bridge.rules import EventDecision
from bridge.unsigned import UnsignedMessage

log = structlog.get_logger("dtn_bridge.worker")

_BATCH = 64  # messages per pipe write: ~400 KB of D0275 events
_SILENCE = 120.0  # seconds without a word from a busy worker: it is stuck (a batch takes milliseconds)
_MAX_INTERNED = 1024


class BuildWorker:
    """The build stage (`bridge.unsigned.unsigned_messages`) run in a child process; call it like the stage."""

    def __init__(self, config: BridgeConfig) -> None:
        self._config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._jobs = 0  # files handed out so far
        self._busy = False  # the worker may still be sending a file's messages

    def start(self) -> None:
        """Start the process now (it loads the definitions and rules while the daemon goes on).

        A fresh interpreter rather than multiprocessing's fork (which would copy the locks of the daemon's threads
        mid-use) or spawn (which re-runs the caller's main module)."""
        ours, theirs = socket.socketpair()
        home = str(Path(__file__).resolve().parents[2])  # this very package, installed or not, whatever the cwd
        path = os.pathsep.join(filter(None, [home, os.environ.get("PYTHONPATH")]))
        with theirs:
            process = subprocess.Popen([sys.executable, "-m", "bridge.adapters.worker", str(theirs.fileno())],
                                       pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                       env={**os.environ, "PYTHONPATH": path})
        self._process, self._conn = process, Connection(ours.detach())
        self._send(("config", self._config))

    def __call__(self, path: Path, checked: ValidFile, sha256: str) -> Iterator[UnsignedMessage]:
        if self._busy or self._process is None or self._process.poll() is not None:
            # The previous file was left half-read (its reader stopped without closing it) or the worker died:
            # its leftovers must never be taken for this file's.
            self.close(graceful=not self._busy)
            self.start()
        self._jobs += 1
        job = self._jobs
        self._send(("file", str(path), checked.portable(), sha256))
        self._busy = True
        try:
            while True:
                kind, payload = self._receive()
                if kind == "batch":
                    for routing_key, canonical, event_id, decision in payload:
                        yield UnsignedMessage(routing_key, canonical, event_id, decision)
                    continue
                self._busy = False
                if kind == "end":
                    return
                if kind == "changed":
                    message, defects = payload
                    raise FlowFileError(message, defects)
                if kind == "stuck":
                    raise WorkerError(f"the build worker process sent nothing for {_SILENCE:g} s: ended, to retry")
                raise RuntimeError(f"the build worker failed: {payload}")
        finally:
            if self._busy and job == self._jobs:  # closed early: the rest is still coming; end, don't drain
                self.close(graceful=False)

    def close(self, *, graceful: bool = True) -> None:
        """Stop the worker (at a file boundary when graceful; at once otherwise). Safe to call twice."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        self._busy = False
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

    def _send(self, job: tuple[object, ...]) -> None:
        assert self._conn is not None
        try:
            self._conn.send(job)
        except OSError as exc:
            raise self._lost(exc) from None

    def _receive(self) -> tuple[str, Any]:
        assert self._conn is not None
        try:
            if not self._conn.poll(_SILENCE):
                self.close(graceful=False)
                return ("stuck", None)
            return self._conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError) as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: BaseException) -> WorkerError:
        process = self._process
        code = None
        if process is not None:
            try:
                code = process.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
        self.close(graceful=False)
        return WorkerError(f"the build worker process ended unexpectedly (exit code {code}): {type(exc).__name__}")


def serve(conn: Connection) -> None:
    """The worker process: its configuration, then jobs until told to stop or the daemon is gone."""
    # A ^C reaches the whole process group, and systemd may signal the whole cgroup: the daemon decides when the worker
    # ends (it finishes the file in hand first), by a message, by closing the pipe, or by SIGKILL.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        kind, config = conn.recv()
    except (EOFError, OSError):
        return
    assert kind == "config" and isinstance(config, BridgeConfig)
    from bridge.dtn.definitions import load_definitions
    from bridge.dtn.reader import FlowFileReader
    from bridge.logs import configure_logging
    from bridge.service import load_rules
    from bridge.unsigned import unsigned_messages

    configure_logging(config.log.level, config.log.format)
    definitions = load_definitions(config.flows.definitions)
    reader = FlowFileReader(definitions, strict=config.flows.strict)
    rules = load_rules(config, definitions)
    interned: dict[EventDecision, EventDecision] = {}  # equal decisions sent as one object (pickle's memo)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the daemon is gone
        if job[0] != "file":
            return
        _, path, portable, sha256 = job
        try:
            batch: list[tuple[str, bytes, str, EventDecision | None]] = []
            valid = ValidFile.from_portable(portable, definitions)
            for message in unsigned_messages(Path(path), valid, sha256, reader=reader, rules=rules):
                decision = message.decision
                if decision is not None:
                    if len(interned) > _MAX_INTERNED:
                        interned.clear()
                    decision = interned.setdefault(decision, decision)
                batch.append((message.routing_key, message.canonical, message.event_id, decision))
                if len(batch) >= _BATCH:
                    conn.send(("batch", batch))
                    batch = []
            if batch:
                conn.send(("batch", batch))
            conn.send(("end", None))
        except (BrokenPipeError, EOFError):
            return  # the daemon stopped reading: it ends us anyway
        except FlowFileError as exc:
            conn.send(("changed", (str(exc), exc.defects)))
        except Exception as exc:  # a bug: reported to the daemon, which quarantines the file with it
            log.error("build_worker_error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
