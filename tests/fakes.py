"""Fakes of the ports (bridge/ports/), for tests of the chains' own logic.

The broker fakes are in memory. They keep the promises the real adapter keeps, and
tests/adapters/rabbitmq/test_ports_contract.py runs the same cases against both: confirms, manual settlement, a
prefetch window, redelivery (flagged) of what was not settled when the connection went, dead-lettering with a
reason, and failures injected on purpose (a lost connection, a nack). Every path that talks to RabbitMQ keeps its
tests against the real server; these fakes only make the chains' logic cheaper to test.

The storage fakes: `FakeLedger` (both ledger sides, in memory), `FakeOutbox` (the outbound folder, in memory),
`FakeSpool` (plain renames in real folders, since the inbound chain reads the claimed file's bytes, without
fsyncs, encryption or hard links) and `FakeWatcher` (the test says which files are ready). Each records what was
done and can fail on purpose (`fail`: StorageError from the next calls of a method);
tests/adapters/test_storage_contract.py runs the same cases against them and the SQLite ledger, the spool's folders
and the FolderOutbox.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

from bridge.dtn.names import candidate_names
from bridge.errors import BrokerError, BrokerUnavailable, StorageError
from bridge.ports import (
    BrokerRefusal,
    Claim,
    Delivery,
    EventKey,
    FileRecord,
    MessagesRejected,
    OutboundFileDraft,
    OutboundFileRecord,
    OutgoingMessage,
    PublishResult,
)

__all__ = ["DeadLetter", "FakeConsumer", "FakeLedger", "FakeOutbox", "FakePublisher", "FakeSpool", "FakeWatcher"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What a reject sent to the dead-letter queue: the message as it came, and why."""

    message_id: str | None
    body: bytes
    routing_key: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Queued:
    message: OutgoingMessage
    redelivered: bool
    timestamp: int


class FakeConsumer:
    """A `Consumer` of one in-memory queue: `offer` puts messages in it (or a `FakePublisher` routes them here).

    Like the real one it holds at most `prefetch` unsettled deliveries, gives them back flagged redelivered when the
    connection goes (`close`, `lose_connection`), and refuses to settle a delivery of a connection that is gone.
    """

    def __init__(self, *, prefetch: int = 200) -> None:
        self.prefetch = prefetch
        self.acked: list[str | None] = []  # message ids, in the order they were acked
        self.dead_letters: list[DeadLetter] = []
        self.connections = 0  # connections opened so far
        self._cond = threading.Condition()
        self._ready: deque[_Queued] = deque()
        self._unacked: dict[int, _Queued] = {}  # delivery tag -> message, this connection's, ascending
        self._tags = itertools.count(1)
        self._connected = False
        self._lost = False  # the next `get` (or the waiting one) reports the lost connection

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def ready(self) -> int:
        """Messages waiting in the queue (not delivered, or given back)."""
        with self._cond:
            return len(self._ready)

    @property
    def unacked(self) -> int:
        with self._cond:
            return len(self._unacked)

    def offer(self, message: OutgoingMessage) -> None:
        """Put `message` at the end of the queue."""
        with self._cond:
            self._ready.append(_Queued(message, False, int(time.time())))
            self._cond.notify_all()

    def lose_connection(self) -> None:
        """The broker drops the connection: unsettled deliveries go back, and `get` raises BrokerUnavailable once."""
        with self._cond:
            self._give_back()
            self._lost = True
            self._cond.notify_all()

    # -- the port --

    def get(self, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._lost:
                    self._lost = False
                    raise BrokerUnavailable("the fake broker closed the connection")
                if not self._connected:
                    self._connected = True
                    self.connections += 1
                    self._tags = itertools.count(1)
                if self._ready and len(self._unacked) < self.prefetch:
                    return self._deliver(self._ready.popleft())
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def deliveries(self, inactivity_timeout: float | None = None) -> Iterator[Delivery]:
        while (delivery := self.get(inactivity_timeout)) is not None:
            yield delivery

    def ack(self, delivery: Delivery, *, multiple: bool = False) -> None:
        with self._cond:
            self._check(delivery)
            tags = [tag for tag in self._unacked if tag <= delivery.delivery_tag] if multiple else \
                [delivery.delivery_tag]
            for tag in tags:
                self.acked.append(self._unacked.pop(tag).message.message_id)
            self._cond.notify_all()

    def reject(self, delivery: Delivery, reason_code: str, reason_text: str, *, timeout: float = 30.0) -> None:
        if not reason_code:
            raise ValueError("reason_code must not be empty")
        with self._cond:
            self._check(delivery)
            del self._unacked[delivery.delivery_tag]
            self.dead_letters.append(DeadLetter(delivery.message_id, delivery.body, delivery.routing_key,
                                                reason_code, reason_text))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._give_back()

    # -- inside --

    def _deliver(self, queued: _Queued) -> Delivery:
        tag = next(self._tags)
        self._unacked[tag] = queued
        message = queued.message
        return Delivery(body=message.body, headers=dict(message.headers or {}), message_id=message.message_id,
                        routing_key=message.routing_key, redelivered=queued.redelivered, delivery_tag=tag,
                        content_type=message.content_type, generation=self.connections, timestamp=queued.timestamp)

    def _check(self, delivery: Delivery) -> None:
        if not self._connected or delivery.generation != self.connections:
            raise BrokerUnavailable("the delivery came on a lost connection; the broker will redeliver it")
        if delivery.delivery_tag not in self._unacked:  # RabbitMQ closes the channel: PRECONDITION_FAILED
            raise BrokerError(f"unknown delivery tag {delivery.delivery_tag}: settled twice?")

    def _give_back(self) -> None:
        """Unsettled deliveries return to the head of the queue, in order, flagged redelivered."""
        for queued in reversed(list(self._unacked.values())):
            self._ready.appendleft(_Queued(queued.message, True, queued.timestamp))
        self._unacked.clear()
        self._connected = False
        self._cond.notify_all()


class FakePublisher:
    """A `Publisher` that confirms in memory: `published` holds every confirmed message, in order, and `route`
    (e.g. a FakeConsumer's `offer`) receives each one.

    Like the real one it takes the iterable lazily, `window` messages at a time; after a window with a refused
    message it takes no more and raises MessagesRejected. `nack` and `lose_connection` inject those failures.
    """

    def __init__(self, route: Callable[[OutgoingMessage], None] | None = None, *, window: int = 1000) -> None:
        self.route = route
        self.window = window
        self.connected = True  # what the inbound loop asks (its ConnectedPublisher); `ensure_connected` sets it
        self.published: list[OutgoingMessage] = []
        self.units = 0  # publish_all calls
        self._nacked: set[str] = set()
        self._lose_after: int | None = None
        self._lock = threading.Lock()

    def nack(self, *message_ids: str) -> None:
        """The broker will refuse these messages (as a full queue with reject-publish does)."""
        self._nacked.update(message_ids)

    def lose_connection(self, after: int = 0) -> None:
        """The next unit loses the connection once it has handed over `after` messages: BrokerUnavailable."""
        self._lose_after = after

    def ensure_connected(self, backoff: object = None, *, stop: threading.Event | None = None) -> None:
        self.connected = True

    def publish_all(self, messages: Iterable[OutgoingMessage], timeout: float = 60.0) -> PublishResult:
        with self._lock:
            self.units += 1
            source = iter(messages)
            published = 0
            rejections: list[BrokerRefusal] = []
            while not rejections and (window := list(itertools.islice(source, self.window))):
                for message in window:
                    if self._lose_after is not None and published >= self._lose_after:
                        self._lose_after = None
                        self.connected = False
                        raise BrokerUnavailable("the fake broker closed the connection while publishing")
                    published += 1
                    if message.message_id in self._nacked:
                        rejections.append(BrokerRefusal(message.message_id, "nacked",
                                                    "the broker refused it (queue full or internal error)"))
                        continue
                    self.published.append(message)
                    if self.route is not None:
                        self.route(message)
            if rejections:
                raise MessagesRejected(rejections, len(rejections))
            return PublishResult(published=published, confirmed=published)


# ------------------------------------------------------------------------------------------------------- storage


class _Faults:
    """Failures injected on purpose: `fail(method, times)` makes the next `times` calls raise StorageError."""

    def __init__(self) -> None:
        self._faults: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def fail(self, method: str, times: int = 1) -> None:
        self._faults[method] += times

    def _call(self, method: str) -> None:
        self.calls[method] += 1
        if self._faults[method] > 0:
            self._faults[method] -= 1
            raise StorageError(f"the fake {type(self).__name__} failed {method} on purpose")


_NEXT_STATE = {  # as the SQLite ledger: a step may repeat, a final state is never left
    "claimed": {"claimed", "parsed", "archived", "quarantined"},
    "parsed": {"parsed", "published", "archived", "quarantined"},
    "published": {"published", "archived", "quarantined"},
    "archived": set(),
    "quarantined": set(),
}


class FakeLedger(_Faults):
    """Both ledger ports (`InboundLedger`, `OutboundLedger`) in memory, with the SQLite ledger's rules."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__()
        self.clock = clock
        self.files: dict[int, FileRecord] = {}
        self.outbound: dict[int, OutboundFileRecord] = {}
        self.written: dict[EventKey, int] = {}  # event -> outbound file id
        self.written_elsewhere: dict[EventKey, str] = {}  # event -> a file the pair's other daemon wrote
        self.counters: Counter[str] = Counter()
        self.manifests: dict[EventKey, str] = {}
        self._ids = itertools.count(1)
        self._outbound_ids = itertools.count(1)

    # inbound
    def record_claimed(self, sha256: str, original_name: str, claim_path: Path | str, size: int) -> int:
        self._call("record_claimed")
        now = self.clock()
        file_id = next(self._ids)
        self.files[file_id] = FileRecord(
            id=file_id, sha256=sha256, original_name=original_name, claim_path=Path(claim_path), size=size,
            state="claimed", file_identifier=None, flow=None, from_participant=None, to_participant=None,
            instances=None, events=None, first_event_id=None, last_event_id=None, final_path=None, reason=None,
            claimed_at=now, published_at=None, archived_at=None, quarantined_at=None, updated_at=now)
        return file_id

    def _update(self, file_id: int, state: str, **changes: object) -> None:
        self._call(f"record_{state}")
        record = self.files.get(file_id)
        if record is None:
            raise StorageError(f"fake ledger: record_{state}: no file with id {file_id}")
        if state not in _NEXT_STATE[record.state]:
            raise StorageError(f"fake ledger: file {file_id} cannot go from {record.state} to {state}")
        self.files[file_id] = replace(record, state=state, updated_at=self.clock(), **changes)  # type: ignore[arg-type]

    def record_parsed(self, file_id: int, *, file_identifier: str, flow: str, from_participant: str,
                      to_participant: str, instances: int) -> None:
        self._update(file_id, "parsed", file_identifier=file_identifier, flow=flow,
                     from_participant=from_participant, to_participant=to_participant, instances=instances)

    def record_published(self, file_id: int, *, events: int, first_event_id: str | None,
                         last_event_id: str | None) -> None:
        self._update(file_id, "published", events=events, first_event_id=first_event_id,
                     last_event_id=last_event_id, published_at=self.clock())

    def record_archived(self, file_id: int, archive_path: Path | str) -> None:
        self._update(file_id, "archived", final_path=Path(archive_path), archived_at=self.clock())

    def record_quarantined(self, file_id: int, path: Path | str, reason: str) -> None:
        self._update(file_id, "quarantined", final_path=Path(path), reason=reason, quarantined_at=self.clock())

    def get(self, file_id: int) -> FileRecord | None:
        return self.files.get(file_id)

    def get_by_claim_path(self, path: Path | str) -> FileRecord | None:
        found = [record for record in self.files.values() if record.claim_path == Path(path)]
        return found[-1] if found else None

    def find_completed_by_sha256(self, sha256: str) -> FileRecord | None:
        return next((record for record in self.files.values()
                     if record.sha256 == sha256 and record.state in ("published", "archived")), None)

    # outbound
    def seen_events(self, keys: Iterable[EventKey]) -> set[EventKey]:
        return {key for key in keys if key in self.written or key in self.written_elsewhere}

    def mark_events_written(self, keys: Iterable[EventKey], file: Path | str) -> int:
        self._call("mark_events_written")
        new = [key for key in dict.fromkeys(keys) if key not in self.written and key not in self.written_elsewhere]
        self.written_elsewhere.update(dict.fromkeys(new, str(file)))
        return len(new)

    def allocate_file_identifier(self, sender: str) -> int:
        self._call("allocate_file_identifier")
        self.counters[sender] += 1
        return self.counters[sender]

    def raise_file_identifier(self, sender: str, at_least: int) -> None:
        self._call("raise_file_identifier")
        self.counters[sender] = max(self.counters[sender], at_least)

    def begin_outbound_file(self, draft: OutboundFileDraft, keys: Iterable[EventKey]) -> int:
        self._call("begin_outbound_file")
        listed = list(keys)
        if any(key in self.written or key in self.written_elsewhere for key in listed):
            raise StorageError(f"fake ledger: begin_outbound_file: some events of {draft.path.name} are already "
                               "written")
        file_id = next(self._outbound_ids)
        self.outbound[file_id] = OutboundFileRecord(
            id=file_id, state="pending", kind=draft.kind, path=draft.path, tmp_path=draft.tmp_path,
            sha256=draft.sha256, size=draft.size, flow=draft.flow, from_participant=draft.from_participant,
            to_participant=draft.to_participant, file_identifier=draft.file_identifier, test_flag=draft.test_flag,
            events=len(listed), origin=draft.origin, manifest_sha256=None, manifest_match=None,
            created_at=self.clock(), written_at=None)
        self.written.update(dict.fromkeys(listed, file_id))
        return file_id

    def finish_outbound_file(self, file_id: int) -> None:
        self._call("finish_outbound_file")
        if file_id in self.outbound:
            self.outbound[file_id] = replace(self.outbound[file_id], state="written", written_at=self.clock())

    def abandon_outbound_file(self, file_id: int) -> None:
        self._call("abandon_outbound_file")
        self.written = {key: owner for key, owner in self.written.items() if owner != file_id}
        if file_id in self.outbound and self.outbound[file_id].state == "pending":
            del self.outbound[file_id]

    def pending_outbound_files(self) -> list[OutboundFileRecord]:
        return [record for record in self.outbound.values() if record.state == "pending"]

    def outbound_file(self, file_id: int) -> OutboundFileRecord | None:
        return self.outbound.get(file_id)

    def outbound_files(self) -> list[OutboundFileRecord]:
        return list(self.outbound.values())

    def find_outbound_by_event(self, key: EventKey) -> OutboundFileRecord | None:
        file_id = self.written.get(key)
        return self.outbound.get(file_id) if file_id is not None else None

    def record_outbound_manifest(self, first_event: EventKey, manifest_id: str, sha256: str) -> None:
        self._call("record_outbound_manifest")
        self.manifests[first_event] = sha256

    def outbound_manifest_sha256(self, first_event: EventKey) -> str | None:
        return self.manifests.get(first_event)

    def record_manifest_check(self, file_id: int, manifest_sha256: str, match: bool) -> None:
        self._call("record_manifest_check")
        self.outbound[file_id] = replace(self.outbound[file_id], manifest_sha256=manifest_sha256,
                                         manifest_match=match)


class FakeOutbox(_Faults):
    """The `Outbox` port in memory: `files` maps each name in `folder` to its bytes."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.files: dict[Path, bytes] = {}
        self.syncs = 0

    def taken(self, path: Path) -> bool:
        return path in self.files

    def write_synced(self, path: Path, data: bytes) -> None:
        self._call("write_synced")
        if path in self.files or path.parent != self.folder:
            raise StorageError(f"cannot create {path!r}: File exists" if path in self.files
                               else f"cannot create {path!r}: not a name in {self.folder}")
        self.files[path] = bytes(data)

    def link(self, tmp: Path, path: Path) -> bool:
        self._call("link")
        if tmp not in self.files:
            raise StorageError(f"cannot move {tmp} to {path}: No such file or directory")
        if path in self.files:
            return False
        self.files[path] = self.files[tmp]
        return True

    def remove(self, path: Path) -> None:
        self._call("remove")
        self.files.pop(path, None)

    def sha256(self, path: Path) -> str | None:
        self._call("sha256")
        data = self.files.get(path)
        return hashlib.sha256(data).hexdigest() if data is not None else None

    def sync(self) -> None:
        self._call("sync")
        self.syncs += 1

    def visible(self) -> dict[str, bytes]:
        """The files the gateway would send: every name but the hidden temporary ones."""
        return {path.name: data for path, data in self.files.items() if not path.name.startswith(".")}


class FakeSpool(_Faults):
    """The `Spool` port by plain renames between real folders: claims are `<n>-<name>` in `processing`, archived
    files go to `archive/<day>/`, quarantined ones beside their `.error.json`; `archived` and `quarantined` list
    the paths in order."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.processing, self.archive_dir = root / "processing", root / "archive"
        self.quarantine_dir = root / "quarantine"
        for folder in (self.processing, self.archive_dir, self.quarantine_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.archived: list[Path] = []
        self.quarantined: list[Path] = []
        self._claims = itertools.count(1)
        self._copied: dict[Path, tuple[int, int]] = {}

    def _target(self, name: str) -> Path:
        return self.processing / f"{next(self._claims):08d}-{name}"

    def claim(self, path: Path) -> Claim | None:
        self._call("claim")
        target = self._target(path.name)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        return Claim(target, path.name, datetime.now(UTC))

    def claim_copy(self, path: Path) -> Claim | None:
        self._call("claim_copy")
        try:
            details = os.lstat(path)
        except FileNotFoundError:
            return None
        signature = (details.st_size, details.st_mtime_ns)
        if self._copied.get(path) == signature or not stat.S_ISREG(details.st_mode) or details.st_nlink != 1:
            return None
        self._copied[path] = signature
        target = self._target(path.name)
        target.write_bytes(path.read_bytes())
        return Claim(target, path.name, datetime.now(UTC))

    def pending_claims(self) -> list[Claim]:
        return [Claim(path, path.name.partition("-")[2], datetime.now(UTC))
                for path in sorted(self.processing.iterdir())]

    def unsafe(self, claim: Claim) -> str | None:
        try:
            details = os.lstat(claim.path)
        except FileNotFoundError as exc:
            raise StorageError(f"claimed file {claim.path} is missing from processing") from exc
        if not stat.S_ISREG(details.st_mode):
            return "not a regular file"
        return "a hard link" if details.st_nlink != 1 else None

    def sha256(self, claim: Claim) -> str:
        return hashlib.sha256(claim.path.read_bytes()).hexdigest()

    def _move(self, claim: Claim, folder: Path, report: Mapping[str, object] | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name in candidate_names(claim.original_name):
            target, report_path = folder / name, folder / f"{name}.error.json"
            if target.exists() or (report is not None and report_path.exists()):
                continue
            if report is not None:
                report_path.write_text(json.dumps(dict(report), default=str))
            os.rename(claim.path, target)
            return target
        raise AssertionError("unreachable")

    def archive(self, claim: Claim, day: date) -> Path:
        self._call("archive")
        final = self._move(claim, self.archive_dir / day.isoformat())
        self.archived.append(final)
        return final

    def quarantine(self, claim: Claim, report: Mapping[str, object]) -> Path:
        self._call("quarantine")
        final = self._move(claim, self.quarantine_dir, report)
        self.quarantined.append(final)
        return final

    def set_aside(self, claim: Claim, report: Mapping[str, object]) -> Path:
        self._call("set_aside")
        final = self._move(claim, self.quarantine_dir, report)
        self.quarantined.append(final)
        return final


class FakeWatcher:
    """The `Watcher` port without a folder to watch: `ready` paths are handed out once (until given back)."""

    def __init__(self) -> None:
        self.ready: list[Path] = []
        self.running = False
        self.forgotten: list[Path] = []

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def ready_files(self, timeout: float) -> list[Path]:
        ready, self.ready = self.ready, []
        if not ready:
            time.sleep(min(timeout, 0.01))  # as the real one: a short wait when nothing is ready, never a busy loop
        return ready

    def pending(self) -> list[Path]:
        return []

    def forget(self, path: Path) -> None:
        self.forgotten.append(path)

    def give_back(self, paths: Iterable[Path]) -> None:
        self.ready.extend(paths)
