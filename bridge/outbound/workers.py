"""The outbound check stage in worker processes beside the daemon, so that checking uses the other cores.

Check workers (bridge.adapters.processes.ChildProcess) check and govern the consumed messages (`CheckWorkers`, a
`CheckStage`) while the daemon batches, writes and acks; the daemon holds at most its prefetch window of messages,
so what is in the pipes is bounded too. A worker opens no connection: it gets message bodies, and builds its
`MessageChecker` from `CheckValues`, plain values the composition root hands it (the public trust store's files).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bridge.dtn.definitions import load_definitions
from bridge.errors import WorkerError
from bridge.outbound.check import Checked, MessageChecker
from bridge.ports import Delivery, SpawnWorker, WorkerProcess
from bridge.rules import RulesDocument
from bridge.signing import TrustStore

_CHECK_BATCH = 64  # outbound messages per pipe write
_BATCHES_OUT = 4  # check batches a worker may have in hand before the daemon waits for its answers


@dataclass(frozen=True, slots=True)
class CheckValues:
    """What a check worker builds its checker from: the composition root's values, picklable, no configuration."""

    definitions: tuple[Path, ...]  # folders of flow definitions over the shipped ones
    rules: RulesDocument
    trust: Path  # the JWKS of the keys outbound events may be signed with
    ca_bundle: Path | None = None
    log: tuple[str, str] = ("info", "auto")  # log level and format


class CheckWorkers:
    """The outbound check stage (`bridge.outbound.check.MessageChecker`) in worker processes: a `CheckStage`.

    Deliveries go out in batches, round robin; each worker answers its batches in order, so taking the batches in
    the order they were sent gives the answers in delivery order. A worker reads its pipe on a thread of its own,
    so the daemon's sends never wait on a worker that is itself waiting for the daemon to read."""

    def __init__(self, values: CheckValues, processes: int, *, spawn: SpawnWorker) -> None:
        """`spawn` makes the processes (the composition root's bridge.adapters.processes.ChildProcess)."""
        self._children = [spawn("check", "bridge.outbound.workers:serve", values, values.log)
                          for _ in range(max(1, processes))]
        self._started = False  # started by the first message unless `start` came first: no outbound, no memory
        self._next = 0
        self._buffer: list[Delivery] = []
        self._sent: deque[tuple[WorkerProcess, list[Delivery]]] = deque()  # batches out, oldest first
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




def serve(conn: Connection, values: CheckValues) -> None:
    """A check worker process: checks the batches of message bodies it is sent until told to stop."""
    definitions = load_definitions(values.definitions)
    trust = TrustStore.from_jwks_file(values.trust, ca_bundle=values.ca_bundle)
    checker = MessageChecker(definitions, trust, values.rules.parse(definitions))
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


