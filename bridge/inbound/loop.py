"""The daemon's inbound loop: resume what a crash left claimed, then watch, claim and settle files one by one.

Broker trouble never loses a file: the claimed file (and the next one, claimed ahead) stays in the processing area,
the loop reconnects with jittered backoff and retries it, and files that arrive meanwhile wait in the inbound folder.
The composition root (bridge/service.py) hands the loop its chain and adapters; a reload swaps `pipeline` and
`watcher` between two files.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from bridge.errors import BrokerError, BrokerUnavailable, StorageError, WorkerError
from bridge.inbound.pipeline import FileOutcome, InboundPipeline
from bridge.ports import Backoff, Claim, Publisher, Spool, Watcher

if TYPE_CHECKING:  # the adapters the composition root hands in; the loop never builds one
    from bridge.adapters.metrics import Metrics
    from bridge.adapters.systemd import Heartbeat, Notifier

log = structlog.get_logger("dtn_bridge.inbound")


class ConnectedPublisher(Publisher, Protocol):
    """The publisher the loop needs: one it can (re)connect and ask whether it is connected."""

    @property
    def connected(self) -> bool:
        """True while the connection is usable."""

    def ensure_connected(self, backoff: Backoff = ..., *, stop: threading.Event | None = None) -> None:
        """Connect, retrying with `backoff` until it works or `stop` is set."""


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class InboundLoop:
    """Watch -> claim -> settle, retrying through broker, storage and worker trouble until told to stop."""

    def __init__(self, pipeline: InboundPipeline, watcher: Watcher, *, spool: Spool,
                 publisher: ConnectedPublisher, metrics: Metrics, notifier: Notifier, heartbeat: Heartbeat,
                 status: Callable[..., None], broker_labels: list[str], shadow: bool,
                 reload: Callable[[], object], connect_seconds: float = 60.0) -> None:
        """`connect_seconds`: the longest one connection attempt takes without being hung (every URL's connect
        timeout and the topology's declaration), the watchdog's allowance for it (`Heartbeat.allow`)."""
        self.pipeline = pipeline
        self.watcher = watcher
        self.spool = spool
        self.publisher = publisher
        self.metrics = metrics
        self.notifier = notifier
        self.heartbeat = heartbeat
        self.status = status  # StatusBoard.update
        self.broker_labels = broker_labels  # the broker URLs without secrets, for the log
        self.shadow = shadow
        self._reload_now = reload
        self.backoff = Backoff()
        self.connect_seconds = connect_seconds
        self.processed = 0
        self._arrivals: dict[Path, float | None] = {}  # claim -> when the file was dropped (latency histogram)
        self._next: Claim | None = None  # claimed (and being checked) while the file before it publishes
        self._reload = threading.Event()

    def request_reload(self) -> None:
        """Ask for a reload at the next file boundary (called from the SIGHUP handler)."""
        self._reload.set()

    def connect(self, stop: threading.Event) -> bool:
        """Connect (and declare the topology), retrying with jittered backoff until `stop`."""
        self.status(broker_connected=False, state="connecting")
        self.metrics.set_broker_connected(False)
        self.notifier.status("connecting to the broker")
        try:
            self.heartbeat.allow(self.connect_seconds)
            backoff = _AllowingBackoff(self.backoff.initial, self.backoff.maximum, self.backoff.factor,
                                       self.heartbeat.allow, self.connect_seconds)
            self.publisher.ensure_connected(backoff, stop=stop)
        except BrokerError as exc:
            if not isinstance(exc, BrokerUnavailable):
                raise  # a topology that does not match the broker's: an operator must act
            return False
        connected = self.publisher.connected
        self.status(broker_connected=connected, state="running" if connected else "stopping")
        self.metrics.set_broker_connected(connected)
        if connected:
            log.info("broker_connected", urls=self.broker_labels)
        return connected

    def run(self, stop: threading.Event, on_ready: Callable[[], object] | None = None) -> None:
        """Run until `stop` is set: then finish the file in hand (or leave it claimed) and return."""
        if self.shadow:  # publishes nothing, so needs no broker
            self.status(broker_connected=False, state="running", mode="shadow")
            log.warning("shadow_mode", advice="files are checked and reported; nothing is published and the "
                        "inbound folder is left as it is")
        elif not self.connect(stop):
            return
        if on_ready is not None:
            on_ready()
        for claim in self.spool.pending_claims():  # a crash left these claimed: finish them first, in order
            log.info("file_resumed", file=claim.original_name)
            if not self.settle(claim, stop):
                return
        self.watcher.start()
        try:
            while not stop.is_set():
                self.heartbeat.beat()
                self.metrics.queue_backlog.set(len(self.watcher.pending()))
                if self._reload.is_set():
                    self._reload.clear()
                    self._reload_now()
                paths = iter(self.watcher.ready_files(timeout=0.5))
                while not (stop.is_set() or self._reload.is_set()):
                    current, self._next = self._next or self._claim_next(paths), None
                    if current is None:
                        break
                    # The next file is claimed now and checked on a thread while this one publishes. A stop or a
                    # reload leaves it claimed: it is settled first, after the reload or at the next start.
                    self._next = self._claim_next(paths)
                    if self._next is not None:
                        self.pipeline.check_ahead(self._next)
                    if not self.settle(current, stop):
                        break
                self.watcher.give_back(paths)  # ready but not claimed (a stop or a reload came first)
        finally:
            self.watcher.stop()

    def _claim_next(self, paths: Iterator[Path]) -> Claim | None:
        """Claim the next of the ready files that can still be claimed; None when there is none."""
        for path in paths:
            arrival = _mtime(path)
            claim = self.take(path)
            self.watcher.forget(path)
            if claim is not None:
                self.metrics.files_received.inc()
                self._arrivals[claim.path] = arrival
                return claim
        return None

    def take(self, path: Path) -> Claim | None:
        """Claim a dropped file; in shadow mode, claim a copy and leave the gateway's file where it is."""
        return self.spool.claim_copy(path) if self.shadow else self.spool.claim(path)

    def settle(self, claim: Claim, stop: threading.Event) -> FileOutcome | None:
        """Process one claimed file, retrying through broker outages; None when stopped with the file claimed."""
        attempt = 0
        while True:
            try:
                outcome = self.pipeline.process(claim)
            except (BrokerError, StorageError, WorkerError) as exc:
                attempt += 1
                self.heartbeat.beat()
                broker = isinstance(exc, BrokerError)
                for rejection in getattr(exc, "rejections", ()):
                    returned = rejection.kind == "returned"
                    (self.metrics.events_returned if returned else self.metrics.events_nacked).inc()
                if broker:
                    self.metrics.set_broker_connected(self.publisher.connected)
                    self.notifier.status("broker lost: reconnecting (files wait in the inbound folder)")
                log.warning("file_retry", file=claim.original_name, attempt=attempt, error=str(exc),
                            cause="broker" if broker else "worker" if isinstance(exc, WorkerError) else "storage")
                self.status(broker_connected=self.publisher.connected, last_error=str(exc))
                delay = self.backoff.delay(attempt)
                self.heartbeat.allow(delay)  # waiting to retry is not a hang
                if stop.wait(delay):
                    return None
                if broker and not self.connect(stop):
                    return None
                continue
            self.processed += 1
            self.status(broker_connected=self.publisher.connected, processed=self.processed,
                        last_file=claim.original_name, last_outcome=outcome.outcome)
            arrival = self._arrivals.pop(claim.path, None)
            if outcome.outcome != "shadowed":
                self.metrics.file_settled(outcome.outcome, rule=outcome.rule,
                                          latency=time.time() - arrival if arrival is not None else None)
            self.notifier.status(f"running: {self.processed} files processed, last {claim.original_name} "
                                 f"{outcome.outcome}")
            return outcome


def _no_allowance(_seconds: float) -> None:
    """Nobody to tell."""


@dataclass(frozen=True, slots=True)
class _AllowingBackoff(Backoff):
    """A backoff whose delays are each announced to the watchdog with the attempt that follows (`allow`): waiting
    to reconnect is not a hang, however long the broker stays away."""

    allow: Callable[[float], None] = _no_allowance
    attempt_seconds: float = 0.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        seconds = Backoff.delay(self, attempt, rng)
        self.allow(seconds + self.attempt_seconds)
        return seconds
