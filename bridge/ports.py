"""The ports: what the chains (bridge/inbound, bridge/outbound, bridge/replay.py) ask of the edges, and the plain
values that cross those boundaries.

The chains import from here, never from bridge/adapters, so they load no pika, sqlite3 or watchdog and run against
the in-memory fakes of tests/fakes.py. The composition root (bridge/service.py) hands them the real adapters:

* the broker (`Publisher`, `Consumer`): bridge.adapters.rabbitmq's `RabbitPublisher` and `RabbitConsumer`, held to
  the fakes by tests/adapters/rabbitmq/test_ports_contract.py;
* the ledger (`InboundLedger`, `OutboundLedger`): bridge.adapters.ledger's SQLite `Ledger`, one object for both;
* the spool (`Spool`: claim, archive, quarantine) and the outbound folder (`Outbox`): bridge.adapters.spool's
  `Spool` and `FolderOutbox`; tests/adapters/test_storage_contract.py holds these and the ledger to their fakes;
* the drop folder's watcher (`Watcher`): bridge.adapters.watcher's `DropWatcher`;
* worker processes (`WorkerProcess`, made by a `SpawnWorker`): bridge.adapters.processes's `ChildProcess`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from bridge.errors import PublishRejected

__all__ = [
    "CLOUDEVENTS_JSON",
    "Backoff",
    "BrokerRefusal",
    "Claim",
    "Consumer",
    "Delivery",
    "EventKey",
    "FileRecord",
    "InboundLedger",
    "MessagesRejected",
    "OutboundFileDraft",
    "OutboundFileRecord",
    "OutboundLedger",
    "Outbox",
    "OutgoingMessage",
    "PublishResult",
    "Publisher",
    "SpawnWorker",
    "Spool",
    "Watcher",
    "WorkerProcess",
]

CLOUDEVENTS_JSON = "application/cloudevents+json"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to publish; `message_id` is the deterministic CloudEvent id: re-publishing is harmless."""

    routing_key: str
    body: bytes
    message_id: str
    headers: Mapping[str, str | int] | None = None
    content_type: str = CLOUDEVENTS_JSON


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Counts of one `publish_all`: handed to the broker and positively confirmed."""

    published: int
    confirmed: int


@dataclass(frozen=True, slots=True)
class BrokerRefusal:
    """Why the broker did not take one message: `kind` is "returned" (unroutable) or "nacked"."""

    message_id: str
    kind: str
    reason: str


class MessagesRejected(PublishRejected):
    """PublishRejected with the details: the first rejected message id and up to 100 rejections."""

    def __init__(self, rejections: Sequence[BrokerRefusal], total: int) -> None:
        self.rejections = tuple(rejections)
        self.total = total
        first = self.rejections[0]
        self.message_id = first.message_id
        self.reason = first.reason
        more = f" (and {total - 1} more)" if total > 1 else ""
        super().__init__(f"message {first.message_id!r} was {first.kind}: {first.reason}{more}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message received from a queue; settle it with the consumer's `ack` or `reject`.

    `generation` identifies the connection it came on: delivery tags are only valid on that connection.
    """

    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None
    routing_key: str
    redelivered: bool
    delivery_tag: int
    content_type: str | None = None
    generation: int = field(default=0, compare=False)
    timestamp: int | None = None  # the AMQP timestamp property (seconds since the epoch), when the publisher set it


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential backoff: attempt n waits between half and all of min(max, initial*2^n)."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt number `attempt` (1-based) is retried."""
        cap = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        return cap / 2 + rng() * cap / 2


class Publisher(Protocol):
    """Publishes units of messages with confirms (the inbound chain, replay's republish)."""

    def publish_all(self, messages: Iterable[OutgoingMessage], timeout: float = 60.0) -> PublishResult:
        """Publish every message and return once the broker confirmed all of them.

        Raises PublishRejected when one was refused (returned or nacked), BrokerUnavailable when the connection
        was lost or `timeout` passed: the caller retries the whole unit (message ids make that harmless)."""
        ...


class Consumer(Protocol):
    """Consumes one queue with manual settlement (the outbound loop, replay's store reader)."""

    def get(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, or None when none arrives within `timeout` seconds.

        Raises BrokerUnavailable once when the connection was lost (unsettled deliveries come again, flagged
        redelivered); the next call reconnects."""
        ...

    def deliveries(self, inactivity_timeout: float | None = None) -> Iterator[Delivery]:
        """Deliveries until none arrives for `inactivity_timeout` seconds (forever if None)."""
        ...

    def ack(self, delivery: Delivery, *, multiple: bool = False) -> None:
        """Settle `delivery` (with `multiple`, every earlier one of its connection too)."""
        ...

    def reject(self, delivery: Delivery, reason_code: str, reason_text: str, *, timeout: float = 30.0) -> None:
        """Dead-letter `delivery` with a reason code and text, then settle it; on failure it stays unsettled."""
        ...

    def close(self) -> None:
        """Give every unsettled delivery back (the broker redelivers it) and drop the connection."""
        ...


# ------------------------------------------------------------------------------------------------------ the ledger

#: An outbound event as CloudEvents define its identity: (`source`, `id`). Another sender's event with the same id
#: is another event, so it can neither pass for a duplicate of ours nor replace our manifest.
EventKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One claimed file as the ledger knows it, and what has happened to it."""

    id: int
    sha256: str
    original_name: str
    claim_path: Path
    size: int
    state: str  # claimed -> parsed -> published -> archived, or quarantined (from any but archived)
    file_identifier: str | None
    flow: str | None
    from_participant: str | None
    to_participant: str | None
    instances: int | None
    events: int | None
    first_event_id: str | None
    last_event_id: str | None
    final_path: Path | None
    reason: str | None
    claimed_at: datetime
    published_at: datetime | None
    archived_at: datetime | None
    quarantined_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OutboundFileDraft:
    """An outbound file about to be linked into place: what `begin_outbound_file` records before the link."""

    kind: str  # "original" (a source file reproduced) or "batch" (a new file of batched events)
    path: Path  # the final name in the outbound folder
    tmp_path: Path  # the hidden temporary name it is written under first
    sha256: str
    size: int
    flow: str
    from_participant: str
    to_participant: str
    file_identifier: str
    test_flag: str
    origin: str | None = None  # the source file's key (sender|file id|created|flow) for a reproduced file


@dataclass(frozen=True, slots=True)
class OutboundFileRecord:
    """One outbound file of the ledger: `pending` between its recording and its link, then `written`."""

    id: int
    state: str
    kind: str
    path: Path
    tmp_path: Path
    sha256: str
    size: int
    flow: str
    from_participant: str
    to_participant: str
    file_identifier: str
    test_flag: str
    events: int
    origin: str | None
    manifest_sha256: str | None
    manifest_match: bool | None
    created_at: datetime
    written_at: datetime | None


class InboundLedger(Protocol):
    """The inbound chain's record of every claimed file, so that a crash at any moment resumes without loss.

    A state never goes back, and a final state (archived, quarantined) is never left: such a step raises
    StorageError, as does a ledger that cannot be written."""

    def record_claimed(self, sha256: str, original_name: str, claim_path: Path | str, size: int) -> int:
        """A file was claimed; returns its ledger id."""
        ...

    def record_parsed(self, file_id: int, *, file_identifier: str, flow: str, from_participant: str,
                      to_participant: str, instances: int) -> None:
        """The file was checked: its header facts and how many flow instances (events to come) it holds."""
        ...

    def record_published(self, file_id: int, *, events: int, first_event_id: str | None,
                         last_event_id: str | None) -> None:
        """All the file's events (and its manifest) were confirmed by the broker."""
        ...

    def record_archived(self, file_id: int, archive_path: Path | str) -> None:
        """The file was archived (the end of a good file's life)."""
        ...

    def record_quarantined(self, file_id: int, path: Path | str, reason: str) -> None:
        """The file was set aside in quarantine, with a one-line reason."""
        ...

    def get_by_claim_path(self, path: Path | str) -> FileRecord | None:
        """The latest record of a claimed file (a restart resumes a pending claim from it)."""
        ...

    def find_completed_by_sha256(self, sha256: str) -> FileRecord | None:
        """The first file with this content that was published or archived (duplicate detection)."""
        ...


class OutboundLedger(Protocol):
    """The outbound writer's record of which events are in which file, for its exactly-once protocol."""

    def seen_events(self, keys: Iterable[EventKey]) -> set[EventKey]:
        """Which of these events are in a file already (pending or written)."""
        ...

    def allocate_file_identifier(self, sender: str) -> int:
        """The next number (1, 2, ...) of `sender`'s durable counter; never handed out twice, gaps allowed."""
        ...

    def begin_outbound_file(self, draft: OutboundFileDraft, keys: Iterable[EventKey]) -> int:
        """Record a file as `pending` with its events in one step; its id. StorageError, recording nothing, when
        one of the events is in a file already: an event never reaches two files."""
        ...

    def finish_outbound_file(self, file_id: int) -> None:
        """The file is in place under its final name: `written`."""
        ...

    def abandon_outbound_file(self, file_id: int) -> None:
        """Forget a pending file and its events (it never reached its final name): they may be written again."""
        ...

    def pending_outbound_files(self) -> list[OutboundFileRecord]:
        """Files recorded but not known to be in place, oldest first: what recovery settles."""
        ...

    def outbound_file(self, file_id: int) -> OutboundFileRecord | None:
        """The outbound file with this id."""
        ...

    def find_outbound_by_event(self, key: EventKey) -> OutboundFileRecord | None:
        """The outbound file (pending or written) that holds this event, if any."""
        ...

    def record_outbound_manifest(self, first_event: EventKey, manifest_id: str, sha256: str) -> None:
        """Remember a source file's manifest, keyed by its first event (a later one of the same key replaces it)."""
        ...

    def outbound_manifest_sha256(self, first_event: EventKey) -> str | None:
        """The SHA-256 the manifest of the source file whose first event is `first_event` announced."""
        ...

    def record_manifest_check(self, file_id: int, manifest_sha256: str, match: bool) -> None:
        """The result of comparing a reproduced file's bytes with its manifest."""
        ...


# ----------------------------------------------------------------------------------------- the spool and outbox


@dataclass(frozen=True, slots=True)
class Claim:
    """A file this process owns: its path in the processing area, the name it arrived with, when it was claimed."""

    path: Path
    original_name: str
    claimed_at: datetime


class Spool(Protocol):
    """Moves of dropped files that never lose one: claim, archive, quarantine (with a report), set aside.

    Archive and quarantine never overwrite (a taken name gets a numbered suffix); storage faults raise StorageError
    and leave the claim where it was, to be retried."""

    def claim(self, path: Path) -> Claim | None:
        """Take a dropped file into processing, atomically; None when it vanished (another instance took it)."""
        ...

    def claim_copy(self, path: Path) -> Claim | None:
        """Shadow mode: claim a copy and leave the dropped file where it is; None when it is gone, not a regular
        file of one link, or was copied already unchanged (a rescan finds files that stay in the folder)."""
        ...

    def pending_claims(self) -> list[Claim]:
        """Claims a previous run did not finish, in claim order."""
        ...

    def unsafe(self, claim: Claim) -> str | None:
        """Why the claimed entry must not be opened (a link, a device, unreadable), or None when it is safe."""
        ...

    def sha256(self, claim: Claim) -> str:
        """The SHA-256 of the claimed file's bytes (OSError as the system raises it)."""
        ...

    def archive(self, claim: Claim, day: date) -> Path:
        """Move the claim to the archive of `day`; returns where it went."""
        ...

    def quarantine(self, claim: Claim, report: Mapping[str, object]) -> Path:
        """Store the report, then move the claim to quarantine beside it; returns the file's new path."""
        ...

    def set_aside(self, claim: Claim, report: Mapping[str, object]) -> Path:
        """Quarantine an entry `unsafe` refused without opening it; returns its new path."""
        ...


class Outbox(Protocol):
    """The outbound folder, as the writer's exactly-once protocol uses it (bridge/outbound/writer.py): write a
    hidden temporary file, give it its final name without ever overwriting, remove the temporary name, sync.
    Faults raise StorageError."""

    @property
    def folder(self) -> Path:
        """The outbound folder: every name below is a name in it."""
        ...

    def taken(self, path: Path) -> bool:
        """Whether something (a file, a link, anything) has this name."""
        ...

    def write_synced(self, path: Path, data: bytes) -> None:
        """Create `path` (never an existing one) with `data`, durably (fsynced)."""
        ...

    def link(self, tmp: Path, path: Path) -> bool:
        """Give `tmp`'s bytes the name `path` as well; False, changing nothing, when `path` is taken."""
        ...

    def remove(self, path: Path) -> None:
        """Remove a name; nothing when it is not there."""
        ...

    def sha256(self, path: Path) -> str | None:
        """The SHA-256 of the file's bytes, or None when it is not there."""
        ...

    def sync(self) -> None:
        """Make the folder's names durable (fsync the folder)."""
        ...


class Watcher(Protocol):
    """The inbound folder's watcher: the dropped files that are complete (stable), once each until forgotten."""

    def start(self) -> None:
        """Start watching (and list what is already there)."""
        ...

    def stop(self) -> None:
        """Stop watching."""
        ...

    def ready_files(self, timeout: float) -> list[Path]:
        """The files ready to be claimed, waiting up to `timeout` seconds for one."""
        ...

    def pending(self) -> list[Path]:
        """The files seen but not ready yet (the backlog)."""
        ...

    def forget(self, path: Path) -> None:
        """The file was taken (or is gone): stop tracking it."""
        ...

    def give_back(self, paths: Iterable[Path]) -> None:
        """Ready files that were not taken: offer them again next time."""
        ...


# -------------------------------------------------------------------------------------------- worker processes


class WorkerProcess(Protocol):
    """One worker process and the daemon's end of its pipe (bridge/inbound/workers.py, bridge/outbound/workers.py).

    Its answers come in the order of the messages; a process that died or fell silent raises WorkerError."""

    role: str

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        ...

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        ...

    def start(self) -> None:
        """Start the process; it builds what it serves from its values."""
        ...

    def send(self, message: tuple[object, ...]) -> None:
        """Send one message (picklable values) to the process."""
        ...

    def ready(self) -> bool:
        """Whether an answer can be received without waiting."""
        ...

    def receive(self) -> tuple[str, Any]:
        """The next answer (kind, value)."""
        ...

    def close(self, *, graceful: bool = True) -> None:
        """Stop the process (after its current job when graceful). Safe to call twice."""
        ...


class SpawnWorker(Protocol):
    """Makes (does not start) a worker process: `role` names it in errors, `target` ("module:function") serves it
    from `values`, and `log` is the (level, format) it logs with."""

    def __call__(self, role: str, target: str, values: object, log: tuple[str, str]) -> WorkerProcess: ...
