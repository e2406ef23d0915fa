"""In-memory implementations of the broker ports (bridge/ports.py), for tests of the chains' own logic.

They keep the promises the real adapter keeps, and tests/adapters/rabbitmq/test_ports_contract.py runs the same
cases against both: confirms, manual settlement, a prefetch window, redelivery (flagged) of what was not settled when
the connection went, dead-lettering with a reason, and failures injected on purpose (a lost connection, a nack).
Every path that talks to RabbitMQ keeps its tests against the real server; these fakes only make the chains' logic
cheaper to test.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from bridge.errors import BrokerError, BrokerUnavailable
from bridge.ports import BrokerRefusal, Delivery, MessagesRejected, OutgoingMessage, PublishResult

__all__ = ["DeadLetter", "FakeConsumer", "FakePublisher"]


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
