"""Replay from the event store (the `dtn.events.store` stream): rebuild DTN files, or republish events.

    stream (from a time) -> filter (flow, participant, until) -> assemble files -> render -> write   (--to-dir)
                                                              -> publish under a prefix              (--republish)

Streams keep every event for their retention, so a migration team can rebuild what passed through on any day and
compare it with the DTN originals (reconciliation), or feed a new consumer the history it missed. The stream is read
until it has been quiet for `idle_seconds` (caught up) or an event later than `until` arrives.

Every event's signature is verified against the trust store when one is given (an event that fails is not replayed);
without one the replay is unverified and says so. A malformed stored event is reported on its own and the replay
goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

import orjson
import structlog

from bridge.adapters.spool import write_atomic
from bridge.dtn.definitions import DefinitionSet
from bridge.dtn.names import plain_name_problem
from bridge.errors import EventError, SignatureError
from bridge.events.envelope import Event, render_events
from bridge.events.manifest import MANIFEST_TYPES
from bridge.ports import Consumer, Delivery, OutgoingMessage, Publisher
from bridge.signing import TrustStore

log = structlog.get_logger("dtn_bridge.replay")


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which events to replay: a flow (D0010 or D0010002), a participant (sender or recipient), an end time."""

    flow: str | None = None
    participant: str | None = None
    until: datetime | None = None

    def accepts(self, event: Event) -> bool:
        if event.get("type") in MANIFEST_TYPES:
            return False
        if self.flow is not None:
            event_type = str(event.get("type", ""))  # uk.dtc.D0010.v002
            reference = event_type[7:12] + event_type[14:] if event_type.startswith("uk.dtc.") else ""
            if not reference.startswith(self.flow):
                return False
        return self.participant is None or self.participant in (event.get("dtcfrom"), event.get("dtcto"))


@dataclass
class ReplaySummary:
    """What a replay did, for the closing line and the tests."""

    read: int = 0
    replayed: int = 0
    files_written: list[Path] = field(default_factory=list)
    incomplete_files: list[str] = field(default_factory=list)
    unreadable: int = 0
    bad_events: list[str] = field(default_factory=list)  # one line per event not replayed: which and why
    verified: bool = False  # every replayed event's signature was checked against the trust store


class FileAssembler:
    """Collects the events of each source file until all its flow instances are there, then renders the file."""

    def __init__(self, definitions: DefinitionSet, folder: Path) -> None:
        self.definitions = definitions
        self.folder = folder
        self.pending: dict[tuple[str, ...], dict[int, Event]] = {}

    @staticmethod
    def file_key(event: Event) -> tuple[str, ...]:
        return tuple(str(event.get(name, "")) for name in ("type", "source", "dtcfileid", "dtccreated", "dtcto"))

    def add(self, event: Event) -> Path | None:
        """Add one event (a duplicate position replaces its twin); returns the file written when the set completes.
        Raises EventError when the event, or the file it completes, cannot be rebuilt (nothing is written)."""
        index, count = event.get("dtcindex"), event.get("dtcflowcount")
        if type(index) is not int or type(count) is not int or not 1 <= index <= count:
            raise EventError(f"dtcindex {index!r} and dtcflowcount {count!r} must be whole numbers with "
                             "1 <= dtcindex <= dtcflowcount")
        key = self.file_key(event)
        instances = self.pending.setdefault(key, {})
        instances[index] = event
        if len(instances) != count:
            return None
        del self.pending[key]
        ordered = [instances[position] for position in sorted(instances)]
        lines = render_events(ordered, self.definitions)
        header_line = next(lines)  # the envelope is checked (DTC formats) before it names a file
        first = ordered[0]
        name = f"{first['type'][7:12]}{first['type'][14:]}_{first['dtcfrom']}_" \
               f"{first.get('dtcfileid') or first['dtccreated']}.txt"
        problem = plain_name_problem(name)
        if problem:
            raise EventError(f"the file name {name[:80]!r} {problem}")
        return write_atomic(self.folder / name, (line.encode("utf-8") for line in chain([header_line], lines)))

    def incomplete(self) -> list[str]:
        return [f"{key[0]} from {key[1]} file {key[2]}: {len(events)} instance(s)"
                for key, events in self.pending.items()]


def read_store(consumer: Consumer, *, since: datetime, idle_seconds: float,
               until: datetime | None) -> Iterator[tuple[Delivery, Event | None]]:
    """The stream's deliveries from `since`, each with its decoded event (None when the body is not JSON).

    Streams seek by chunk, so messages a little older than `since` may come first: they are acked and skipped."""
    floor = int(since.timestamp())
    for delivery in consumer.deliveries(inactivity_timeout=idle_seconds):
        if delivery.timestamp is not None and until is not None and delivery.timestamp > until.timestamp():
            consumer.ack(delivery)
            return
        if delivery.timestamp is not None and delivery.timestamp < floor:
            consumer.ack(delivery)
            continue
        try:
            event = orjson.loads(delivery.body)
        except orjson.JSONDecodeError:
            event = None
        yield delivery, event


def replay(consumer: Consumer, *, since: datetime, selection: ReplayFilter, idle_seconds: float = 3.0,
           assembler: FileAssembler | None = None, publisher: Publisher | None = None,
           republish_prefix: str | None = None, progress: Callable[[ReplaySummary], None] | None = None,
           trust: TrustStore | None = None) -> ReplaySummary:
    """Read the store and rebuild files (`assembler`) and/or republish (`publisher` + `republish_prefix`); with
    `trust`, only events whose signature verifies."""
    summary = ReplaySummary(verified=trust is not None)
    batch: list[OutgoingMessage] = []

    def flush() -> None:
        if publisher is not None and batch:
            publisher.publish_all(list(batch))
            batch.clear()

    for delivery, event in read_store(consumer, since=since, idle_seconds=idle_seconds, until=selection.until):
        summary.read += 1
        if not isinstance(event, dict):
            summary.unreadable += 1
            summary.bad_events.append(f"message {delivery.message_id}: "
                                      + ("not JSON" if event is None else "not a JSON object"))
        elif selection.accepts(event) and _verified(event, trust, delivery, summary):
            summary.replayed += 1
            if assembler is not None:
                try:
                    written = assembler.add(event)
                except EventError as exc:
                    log.warning("replay_file_not_rebuilt", error=str(exc))
                    summary.bad_events.append(f"event {str(event.get('id'))[:80]}: {exc}")
                    written = None
                if written is not None:
                    summary.files_written.append(written)
            if publisher is not None and republish_prefix:
                batch.append(OutgoingMessage(f"{republish_prefix}.{delivery.routing_key}", delivery.body,
                                             _message_id(event, delivery)))
                if len(batch) >= 500:
                    flush()
        consumer.ack(delivery)
        if progress is not None and summary.read % 200 == 0:
            progress(summary)
    flush()
    if assembler is not None:
        summary.incomplete_files = assembler.incomplete()
    return summary


def _message_id(event: Event, delivery: Delivery) -> str:
    """The republished message's id: the one it was stored with, else the event id when AMQP can carry it (a
    CloudEvents id may be longer than the 255 bytes of a message id; one such event must not stop the replay)."""
    event_id = event.get("id")
    if delivery.message_id:
        return delivery.message_id
    return event_id if isinstance(event_id, str) and len(event_id.encode()) <= 255 else ""


def _verified(event: Event, trust: TrustStore | None, delivery: Delivery, summary: ReplaySummary) -> bool:
    """Whether the event may be replayed: its signature verifies (or nothing can be verified: see `verified`)."""
    if trust is None:
        return True
    try:
        trust.verify(event, from_json=True)
    except SignatureError as exc:
        summary.bad_events.append(f"event {str(event.get('id', delivery.message_id))[:80]}: signature: {exc}")
        return False
    return True


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (a date alone means its midnight UTC); naive times are UTC."""
    value = datetime.fromisoformat(text)  # Python 3.11 reads a final Z
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def describe(summary: ReplaySummary) -> Any:
    return {"read": summary.read, "replayed": summary.replayed, "files_written": len(summary.files_written),
            "incomplete_files": len(summary.incomplete_files), "unreadable": summary.unreadable,
            "bad_events": len(summary.bad_events), "verified": summary.verified}
