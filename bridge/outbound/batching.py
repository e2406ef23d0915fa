"""Stage 2: which held events make which file, and when. Pure bookkeeping: no I/O, time passed in.

Two kinds of groups are open at any moment:

* an *original set* per source file (events carrying dtcindex/dtcflowcount/dtccreated): complete when every
  dtcindex 1..dtcflowcount is held, then it becomes one file reproducing the source exactly;
* a *batch* per `BatchKey` (flow version, sender and role, recipient and role, test flag) for new events: closed
  at `batch_size` events or when its oldest event has waited `batch_seconds`.

An original set still incomplete when its oldest event has waited `batch_seconds` is *diverted*: its events join
the batches like new events (or, without a test data flag, come back as `incomplete` for the loop to dead-letter).
So does a set that can never complete because its file is larger than the prefetch window, and the second of two
different events claiming the same dtcindex. Unacked deliveries are bounded by the prefetch (`capacity`): when it
is full, `relieve` closes the largest batch early so that the broker can send more. A second delivery of a held
event is not held here: the loop acks it at once, since the first delivery, still unacked, is the one the broker
would give back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bridge.outbound.check import BatchKey, CheckedEvent
from bridge.ports import Delivery, EventKey

Kind = Literal["original", "batch", "incomplete"]


@dataclass(slots=True)
class Held:
    """A checked event and its delivery, not yet acked."""

    event: CheckedEvent
    delivery: Delivery
    arrived: float  # monotonic seconds


@dataclass(frozen=True, slots=True)
class ReadyFile:
    """Events that make one file now (`original`, `batch`), or cannot make any (`incomplete`)."""

    kind: Kind
    items: tuple[Held, ...]
    reason: str  # complete, size, time, capacity, stop, diverted


@dataclass(slots=True)
class _Group:
    oldest: float
    items: list[Held] = field(default_factory=list)


@dataclass(slots=True)
class _OriginalSet:
    oldest: float
    flow_count: int
    by_index: dict[int, Held] = field(default_factory=dict)


class Batcher:
    """Open batches and original sets, keyed; every method returns the files that became ready."""

    def __init__(self, batch_size: int, batch_seconds: float, capacity: int) -> None:
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.capacity = capacity
        self.held = 0  # deliveries held (each one unacked)
        self._by_key: dict[EventKey, Held] = {}
        self._batches: dict[BatchKey, _Group] = {}
        self._originals: dict[str, _OriginalSet] = {}

    def find(self, key: EventKey) -> Held | None:
        """The held event with this (source, id): a second delivery of it needs no place of its own."""
        return self._by_key.get(key)

    def add(self, event: CheckedEvent, delivery: Delivery, now: float) -> list[ReadyFile]:
        """Hold a new event; returns what became ready (a completed source file, a full batch)."""
        held = Held(event, delivery, now)
        self._by_key[event.key] = held
        self.held += 1
        origin = event.origin
        if origin is None or origin.flow_count > self.capacity:
            return self._to_batches([held], "size")
        group = self._originals.get(origin.key)
        if group is None:
            group = self._originals[origin.key] = _OriginalSet(now, origin.flow_count)
        if origin.index in group.by_index or origin.flow_count != group.flow_count:
            return self._to_batches([held], "diverted")  # two different events claim one position
        group.by_index[origin.index] = held
        if len(group.by_index) < group.flow_count:
            return []
        del self._originals[origin.key]
        return [self._emit("original", [group.by_index[i] for i in range(1, group.flow_count + 1)], "complete")]

    def due(self, now: float) -> list[ReadyFile]:
        """Groups whose oldest event has waited `batch_seconds`: incomplete sets are diverted, batches closed."""
        ready: list[ReadyFile] = []
        limit = now - self.batch_seconds
        for source in [k for k, g in self._originals.items() if g.oldest <= limit]:
            ready.extend(self._to_batches(list(self._originals.pop(source).by_index.values()), "diverted"))
        for batch in [k for k, g in self._batches.items() if g.oldest <= limit]:
            ready.append(self._emit("batch", self._batches.pop(batch).items, "time"))
        return ready

    def next_deadline(self) -> float | None:
        """When `due` will next have something to do (monotonic seconds), or None when nothing is held."""
        oldest = [g.oldest for g in self._batches.values()] + [g.oldest for g in self._originals.values()]
        return min(oldest) + self.batch_seconds if oldest else None

    def relieve(self) -> list[ReadyFile]:
        """The prefetch window is full: close the largest batch (diverting the oldest source file if none)."""
        ready: list[ReadyFile] = []
        if not self._batches and self._originals:
            source = min(self._originals, key=lambda k: self._originals[k].oldest)
            ready.extend(self._to_batches(list(self._originals.pop(source).by_index.values()), "diverted"))
        if self._batches:
            batch = max(self._batches, key=lambda k: len(self._batches[k].items))
            ready.append(self._emit("batch", self._batches.pop(batch).items, "capacity"))
        return ready

    def divert(self, items: list[Held]) -> list[ReadyFile]:
        """Events that could not be written as their source file (the writer refused the set): batch them."""
        for held in items:
            self._by_key[held.event.key] = held
            self.held += 1
        return self._to_batches(items, "diverted")

    def take_batches(self) -> list[ReadyFile]:
        """Every open batch, closed now (at stop); original sets stay open for `clear`."""
        ready = [self._emit("batch", group.items, "stop") for group in self._batches.values()]
        self._batches.clear()
        return ready

    def clear(self) -> None:
        """Forget everything held (the connection was lost or we stop: the broker redelivers it all)."""
        self._by_key.clear()
        self._batches.clear()
        self._originals.clear()
        self.held = 0

    @property
    def open_originals(self) -> int:
        """How many source files are being gathered."""
        return len(self._originals)

    def _to_batches(self, items: list[Held], reason: str) -> list[ReadyFile]:
        ready: list[ReadyFile] = []
        homeless = [held for held in items if held.event.batch_key is None]
        if homeless:
            ready.append(self._emit("incomplete", homeless, reason))
        for held in items:
            key = held.event.batch_key
            if key is None:
                continue
            group = self._batches.get(key)
            if group is None:
                group = self._batches[key] = _Group(held.arrived)
            group.oldest = min(group.oldest, held.arrived)
            group.items.append(held)
            if len(group.items) >= self.batch_size:
                ready.append(self._emit("batch", self._batches.pop(key).items, "size"))
        return ready

    def _emit(self, kind: Kind, items: list[Held], reason: str) -> ReadyFile:
        for held in items:
            self._by_key.pop(held.event.key, None)
            self.held -= 1
        return ReadyFile(kind, tuple(items), reason)
