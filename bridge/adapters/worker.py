"""The stages that cost the most CPU, in worker processes beside the daemon, so that they use the other cores.

Inbound, `inbound.workers` build workers build, govern, canonicalize and sign a file's events while the daemon
publishes them:

    daemon process                                   workers (`python -m bridge.adapters.worker`: new
                                                     interpreters; they inherit no thread, lock or socket)
    check -> job (path, first pass, SHA-256,  ---->  second pass -> events -> governance -> canonical bytes -> sign
                  this worker's share)               (each its share: every n-th run of 64 instances)
    publish  <---- the runs, taken from each worker in turn through its pipe, which blocks the worker while the
                   publisher is behind: memory stays bounded whatever the file's size

Outbound, check workers verify and govern the consumed messages (`CheckWorkers`) while the daemon batches, writes and
acks; the daemon holds at most its prefetch window of messages, so what is in the pipes is bounded too.

No worker opens a connection: the build worker reads the claimed file by its path, a check worker gets message
bodies and the public trust store. The build worker signs with the key the daemon loaded (at start or at the last
reload), which it receives through its pipe as PKCS#8 bytes: a socket pair between two processes of one user,
never a file or a log line. When the daemon stops taking a file's messages early (the
broker failed, a stop), the build workers are ended and fresh ones serve the next file, so the rest of one file can
never be taken for the next. A worker that dies raises WorkerError, which the daemon retries like a broker outage; if
the daemon dies, the workers read the end of their pipes and exit.
"""

from __future__ import annotations

import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)

from bridge.build import BuiltMessage
from bridge.config import BridgeConfig
from bridge.dtn.valid import ValidFile
from bridge.errors import FlowFileError, WorkerError
from bridge.flowfile import SHARE_INSTANCES
from bridge.outbound.check import Checked
from bridge.ports import Delivery
from bridge.rules import EventDecision
from bridge.signing import Signer

log = structlog.get_logger("dtn_bridge.worker")

_SILENCE = 120.0  # seconds without a word from a busy worker: it is stuck (a batch takes milliseconds)
_CHECK_BATCH = 64  # outbound messages per pipe write
_BATCHES_OUT = 4  # check batches a worker may have in hand before the daemon waits for its answers


class _Child:
    """One worker process (`python -m bridge.adapters.worker`) and the daemon's end of its pipe."""

    def __init__(self, role: str, config: BridgeConfig, key: bytes | None = None) -> None:
        self.role = role  # "build" or "check"
        self._config = config
        self._key = key  # the build worker's signing key (PKCS#8 DER)
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
            process = subprocess.Popen([sys.executable, "-m", "bridge.adapters.worker", str(theirs.fileno())],
                                       pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                       env={**os.environ, "PYTHONPATH": path})
        self._process, self._conn = process, Connection(ours.detach())
        self._poller = select.poll()  # `ready` is asked between two deliveries: a standing poll set costs ~1 µs,
        self._poller.register(self._conn.fileno(), select.POLLIN)  # Connection.poll(0) builds a selector each time
        self.send(("config", self.role, self._config, self._key))

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
        """The next answer; WorkerError when the process died or said nothing for `_SILENCE` seconds."""
        if self._conn is None:
            raise WorkerError(f"the {self.role} worker process was ended")
        try:
            if not self._conn.poll(_SILENCE):
                self.close(graceful=False)
                raise WorkerError(f"the {self.role} worker process sent nothing for {_SILENCE:g} s: ended, to retry")
            return self._conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError) as exc:
            raise self._lost(exc) from None

    def close(self, *, graceful: bool = True) -> None:
        """Stop the process (after its current job when graceful; at once otherwise). Safe to call twice."""
        process, conn = self._process, self._conn
        self._process = self._conn = self._poller = None
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


class BuildWorker:
    """The build stage (`bridge.build.built_messages`) run in child processes; call it like the stage.

    With several processes, each builds and signs every n-th run of SHARE_INSTANCES instances of the file (each
    reads the whole file, builds only its own), and the runs are taken from them in turn: the messages come in file
    order, and the processes work side by side, each a run or two ahead in its pipe."""

    def __init__(self, config: BridgeConfig, signer: Signer, processes: int = 1) -> None:
        key = signer.private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        self._children = [_Child("build", config, key) for _ in range(max(1, processes))]
        self._jobs = 0  # files handed out so far
        self._busy = False  # a worker may still be sending a file's messages

    @property
    def pid(self) -> int | None:
        return self._children[0].pid

    @property
    def pids(self) -> list[int | None]:
        return [child.pid for child in self._children]

    def start(self) -> None:
        for child in self._children:
            child.start()

    def __call__(self, path: Path, checked: ValidFile, sha256: str) -> Iterator[BuiltMessage]:
        children = self._children
        if self._busy or not all(child.running for child in children):
            # The previous file was left half-read (its reader stopped without closing it) or a worker died:
            # its leftovers must never be taken for this file's.
            self.close(graceful=not self._busy)
            self.start()
        self._jobs += 1
        job = self._jobs
        for part, child in enumerate(children):
            child.send(("file", str(path), checked.portable(), sha256, part, len(children)))
        self._busy = True
        try:
            for run in range(-(-checked.flow_count // SHARE_INSTANCES)):  # each run's messages, in turn
                kind, payload = children[run % len(children)].receive()
                if kind != "batch":
                    self._ended(kind, payload)
                for routing_key, body, event_id, decision in payload:
                    yield BuiltMessage(routing_key, body, event_id, decision)
            for child in children:
                self._ended(*child.receive())
            self._busy = False
        finally:
            if self._busy and job == self._jobs:  # closed early: the rest is still coming; end, don't drain
                self.close(graceful=False)

    @staticmethod
    def _ended(kind: str, payload: Any) -> None:
        """A worker's last word on a file: nothing to do when it is the end, else the file's error."""
        if kind == "end":
            return
        if kind == "changed":
            message, defects = payload
            raise FlowFileError(message, defects)
        if kind == "batch":
            raise RuntimeError("a build worker sent more instances than the file's first pass counted")
        raise RuntimeError(f"the build worker failed: {payload}")

    def close(self, *, graceful: bool = True) -> None:
        """Stop the workers (at a file boundary when graceful; at once otherwise). Safe to call twice."""
        self._busy = False
        for child in self._children:
            child.close(graceful=graceful)


class CheckWorkers:
    """The outbound check stage (`bridge.outbound.check.MessageChecker`) in worker processes: a `CheckStage`.

    Deliveries go out in batches, round robin; each worker answers its batches in order, so taking the batches in
    the order they were sent gives the answers in delivery order. A worker reads its pipe on a thread of its own,
    so the daemon's sends never wait on a worker that is itself waiting for the daemon to read."""

    def __init__(self, config: BridgeConfig, processes: int) -> None:
        self._children = [_Child("check", config) for _ in range(max(1, processes))]
        self._started = False  # started by the first message unless `start` came first: no outbound, no memory
        self._next = 0
        self._buffer: list[Delivery] = []
        self._sent: deque[tuple[_Child, list[Delivery]]] = deque()  # batches out, oldest first
        self._pending = 0
        self._look = False  # a batch went out since answers were last looked for

    def start(self) -> None:
        self._started = True
        for child in self._children:
            child.start()

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, delivery: Delivery) -> None:
        self._buffer.append(delivery)
        self._pending += 1
        if len(self._buffer) >= _CHECK_BATCH:
            self._send()

    def take(self, *, drain: bool) -> list[tuple[Delivery, Checked]]:
        if drain and self._buffer:
            self._send()
        answers: list[tuple[Delivery, Checked]] = []
        # Between two batches sent there is nothing new to look for: each look is a system call that hands the
        # GIL to the broker's I/O thread, which costs more than the look when asked at every delivery.
        look, self._look = self._look, False
        while self._sent:
            child, deliveries = self._sent[0]
            if not (drain or len(self._sent) > _BATCHES_OUT * len(self._children) or (look and child.ready())):
                break
            kind, payload = child.receive()
            if kind != "checked" or not isinstance(payload, list) or len(payload) != len(deliveries):
                child.close(graceful=False)
                raise WorkerError(f"the check worker process answered {kind!r}, not {len(deliveries)} answers")
            self._sent.popleft()
            self._pending -= len(deliveries)
            answers.extend(zip(deliveries, payload))
        return answers

    def reset(self) -> None:
        """Forget what is pending; its answers still on the way are read and dropped (a dead worker is replaced)."""
        self._buffer.clear()
        while self._sent:
            child, _deliveries = self._sent.popleft()
            if child.running:
                try:
                    child.receive()
                except WorkerError:
                    pass
        self._pending = 0
        for child in self._children:
            if self._started and not child.running:
                child.close(graceful=False)
                child.start()

    def close(self) -> None:
        self._buffer.clear()
        self._sent.clear()
        self._pending = 0
        self._started = False
        for child in self._children:
            child.close()

    def _send(self) -> None:
        if not self._started:
            self.start()
        child = self._children[self._next]
        self._next = (self._next + 1) % len(self._children)
        if not child.running:  # died since it last answered: its batches are lost with it
            child.close(graceful=False)
            raise WorkerError("a check worker process ended unexpectedly")
        batch, self._buffer = self._buffer, []
        child.send(("check", [delivery.body for delivery in batch]))
        self._sent.append((child, batch))
        self._look = True


def serve(conn: Connection) -> None:
    """The worker process: its role and configuration, then jobs until told to stop or the daemon is gone."""
    # A ^C reaches the whole process group, and systemd may signal the whole cgroup: the daemon decides when the worker
    # ends (it finishes the file in hand first), by a message, by closing the pipe, or by SIGKILL.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        kind, role, config, key = conn.recv()
    except (EOFError, OSError):
        return
    assert kind == "config" and role in ("build", "check") and isinstance(config, BridgeConfig)
    from bridge.logs import configure_logging

    configure_logging(config.log.level, config.log.format)
    if role == "build":
        assert isinstance(key, bytes)
        _serve_builds(conn, config, Signer(load_der_private_key(key, None)))
    else:
        _serve_checks(conn, config)


def _serve_builds(conn: Connection, config: BridgeConfig, signer: Signer) -> None:
    from bridge.build import built_messages
    from bridge.dtn.definitions import load_definitions
    from bridge.dtn.reader import FlowFileReader
    from bridge.service import load_rules

    definitions = load_definitions(config.flows.definitions)
    reader = FlowFileReader(definitions, strict=config.flows.strict, checks=config.checks.severities)
    rules = load_rules(config, definitions)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the daemon is gone
        if job[0] != "file":
            return
        _, path, portable, sha256, part, parts = job
        try:
            batch: list[tuple[str, bytes, str, EventDecision | None]] = []
            events = 0
            valid = ValidFile.from_portable(portable, definitions)
            for message in built_messages(Path(path), valid, sha256, reader=reader, rules=rules,
                                          sign=signer.signed_json, share=(part, parts)):
                if message.decision is not None:  # an event's first message: one pipe message per run
                    if events == SHARE_INSTANCES:
                        conn.send(("batch", batch))
                        batch, events = [], 0
                    events += 1
                # a file's events share one decision object (built_messages), so it crosses the pipe once a batch
                batch.append((message.routing_key, message.body, message.event_id, message.decision))
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


def _serve_checks(conn: Connection, config: BridgeConfig) -> None:
    from bridge.dtn.definitions import load_definitions
    from bridge.outbound.check import MessageChecker
    from bridge.service import load_rules, load_trust

    definitions = load_definitions(config.flows.definitions)
    trust = load_trust(config)
    assert trust is not None, "check workers are started only with signing.trust"
    checker = MessageChecker(definitions, trust, load_rules(config, definitions))
    inbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def read() -> None:  # always reading, so that the daemon never blocks on a full pipe while we send
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                job = None
            inbox.put(job)
            if job is None or job[0] != "check":
                return

    threading.Thread(target=read, name="check-worker-inbox", daemon=True).start()
    while (job := inbox.get()) is not None and job[0] == "check":
        try:
            conn.send(("checked", [checker.check(body) for body in job[1]]))
        except OSError:
            return  # the daemon is gone


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
