"""The build stage in worker processes beside the daemon, so that building and signing use the other cores.

    daemon process                                   build workers (bridge.adapters.processes.ChildProcess)
    check -> job (path, first pass, SHA-256,  ---->  second pass -> events -> governance -> canonical bytes -> sign
                  this worker's share)               (each its share: every n-th run of 64 instances)
    publish  <---- the runs, taken from each worker in turn through its pipe, which blocks the worker while the
                   publisher is behind: memory stays bounded whatever the file's size

A worker opens no connection: it reads the claimed file by its path and builds its chain from `BuildValues`, plain
values the composition root hands it. It signs with the key the daemon loaded (at start or at the last reload),
received through its pipe as PKCS#8 PEM bytes: a socket pair between two processes of one user, never a file or a
log line. When the daemon stops taking a file's messages early (the broker failed, a stop), the workers are ended and
fresh ones serve the next file, so the rest of one file can never be taken for the next.
"""

from __future__ import annotations

import traceback
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from bridge.dtn.checks import Severity
from bridge.dtn.definitions import load_definitions
from bridge.dtn.reader import FlowFileReader
from bridge.dtn.valid import ValidFile
from bridge.errors import FlowFileError
from bridge.inbound.build import BuiltMessage, built_messages
from bridge.inbound.flowfile import SHARE_INSTANCES
from bridge.ports import SpawnWorker
from bridge.rules import EventDecision, RulesDocument
from bridge.signing import Signer
from bridge.signing.keys import load_private_key_pem

log = structlog.get_logger("dtn_bridge.worker")


@dataclass(frozen=True, slots=True)
class BuildValues:
    """What a build worker builds its chain from: the composition root's values, picklable, no configuration."""

    definitions: tuple[Path, ...]  # folders of flow definitions over the shipped ones
    strict: bool
    checks: Mapping[str, Severity]
    rules: RulesDocument
    key: bytes = field(repr=False)  # the signing key, PKCS#8 PEM: never in a repr, a log or a file
    log: tuple[str, str] = ("info", "auto")  # log level and format


class BuildWorker:
    """The build stage (`bridge.inbound.build.built_messages`) run in child processes; call it like the stage.

    With several processes, each builds and signs every n-th run of SHARE_INSTANCES instances of the file (each
    reads the whole file, builds only its own), and the runs are taken from them in turn: the messages come in file
    order, and the processes work side by side, each a run or two ahead in its pipe."""

    def __init__(self, values: BuildValues, processes: int = 1, *, spawn: SpawnWorker) -> None:
        """`spawn` makes the processes (the composition root's bridge.adapters.processes.ChildProcess)."""
        self._children = [spawn("build", "bridge.inbound.workers:serve", values, values.log)
                          for _ in range(max(1, processes))]
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

    def __call__(self, path: Path, checked: ValidFile, sha256: str) -> Generator[BuiltMessage, None, None]:
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




def serve(conn: Connection, values: BuildValues) -> None:
    """A build worker process: builds the shares of files it is sent until told to stop or the daemon is gone."""
    definitions = load_definitions(values.definitions)
    reader = FlowFileReader(definitions, strict=values.strict, checks=values.checks)
    rules = values.rules.parse(definitions)
    signer = Signer(load_private_key_pem(values.key))
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
        except Exception as exc:  # noqa: BLE001 (a bug: reported to the daemon, which quarantines the file with it)
            log.error("build_worker_error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))


