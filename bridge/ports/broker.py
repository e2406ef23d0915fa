"""The broker ports (`Publisher`, `Consumer`) and the messages that cross them: bridge.adapters.rabbitmq
implements them."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.errors import PublishRejected

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
