"""The RabbitMQ topology of dtn-bridge, as plain data.

Kept free of pika so the shape can be read, tested and documented without a broker;
`declare_topology` (client.py) turns the plan into declarations. Every name is configurable so tests (and
several bridges on one vhost) can use their own copies.

Queue arguments are fixed when a queue is first declared: declaring it again with other ones is refused
(PRECONDITION_FAILED), so every argument the bridge sets is built in one place per queue (`outbound_arguments`,
`rejected_arguments`) and each limit that an operator may rather set by policy can be left out (None). The
upgrade of an existing installation is in docs/operations.md ("Upgrading the broker topology").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from bridge.config import DEFAULT_DELIVERY_LIMIT, DEFAULT_REJECTED_MAX_LENGTH
from bridge.errors import ConfigError

# RabbitMQ stream retention units: years, months, days, hours, minutes, seconds.
_MAX_AGE = re.compile(r"^[1-9][0-9]*[YMDhms]$")


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """One exchange to declare."""

    name: str
    type: Literal["topic", "direct", "fanout", "headers"] = "topic"
    durable: bool = True


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One queue to declare; `arguments` are the x-arguments that must match an existing queue."""

    name: str
    arguments: dict[str, str | int] = field(default_factory=dict)
    durable: bool = True


@dataclass(frozen=True, slots=True)
class BindingSpec:
    """A queue bound to an exchange with a routing (binding) key."""

    queue: str
    exchange: str
    routing_key: str


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and retention of everything the bridge declares; the defaults are the production topology.

    Setting `store_queue`, `dead_letter_queue`, `outbound_queue` or `outbound_rejected_queue` to None leaves
    that queue (and its binding) out, e.g. to make messages unroutable on purpose. `dead_letter_queue` (a queue
    bound to the dead-letter exchange with `#`) is None by default: it held a second copy of every rejected event,
    which `dtn.outbound.rejected` keeps.
    """

    exchange: str = "dtn.events"
    store_queue: str | None = "dtn.events.store"
    store_binding_key: str = "#"
    store_max_age: str | None = "30D"
    store_max_length_bytes: int | None = None
    dead_letter_exchange: str = "dtn.dead-letter"
    dead_letter_queue: str | None = None
    dead_letter_binding_key: str = "#"
    outbound_queue: str | None = "dtn.outbound"
    outbound_binding_key: str = "outbound.#"
    outbound_rejected_routing_key: str = "outbound.rejected"
    outbound_rejected_queue: str | None = "dtn.outbound.rejected"
    # Redeliveries of one message before the broker dead-letters it itself (a poison message that kills the daemon
    # each time, redelivered for ever otherwise). RabbitMQ 4 applies 20 to every quorum queue without one: the bridge
    # gives back all the deliveries it holds at each interruption (a lost connection, a full disk retried every 30 s
    # at most), so 20 would dead-letter good events after minutes of trouble. 1000 is hours of it.
    outbound_delivery_limit: int | None = DEFAULT_DELIVERY_LIMIT
    # Rejected outbound events kept; a full queue refuses the next reject (the event stays in dtn.outbound, the
    # outbound side stops, loudly) rather than dropping the oldest silently.
    rejected_max_length: int | None = DEFAULT_REJECTED_MAX_LENGTH
    outbound_single_active_consumer: bool = False  # one consumer at a time: the active one of a pair

    def __post_init__(self) -> None:
        """The values a configuration sets are named by their keys (broker.*); the others are the code's own."""
        if self.store_max_age is not None and not _MAX_AGE.match(self.store_max_age):
            raise ConfigError(
                "broker.stream_max_age",
                f"{self.store_max_age!r} is not a RabbitMQ max-age such as '30D', '12h' (units Y M D h m s)",
            )
        if self.outbound_delivery_limit is not None and self.outbound_delivery_limit <= 0:
            raise ConfigError("broker.outbound_delivery_limit", "must be at least 1 (or null: not declared)")
        if self.rejected_max_length is not None and self.rejected_max_length <= 0:
            raise ConfigError("broker.rejected_max_length", "must be at least 1 (or null: not declared)")
        if self.store_max_length_bytes is not None and self.store_max_length_bytes <= 0:
            raise ValueError("store_max_length_bytes must be a positive number of bytes")
        for key in ("exchange", "dead_letter_exchange"):
            if not getattr(self, key):
                raise ValueError(f"{key} must not be empty (the default exchange is not used)")

    def with_suffix(self, suffix: str) -> Topology:
        """This topology with `suffix` appended to every exchange and queue name (tests, side by side)."""

        def add(name: str | None) -> str | None:
            return None if name is None else f"{name}{suffix}"

        return replace(
            self,
            exchange=f"{self.exchange}{suffix}",
            store_queue=add(self.store_queue),
            dead_letter_exchange=f"{self.dead_letter_exchange}{suffix}",
            dead_letter_queue=add(self.dead_letter_queue),
            outbound_queue=add(self.outbound_queue),
            outbound_rejected_queue=add(self.outbound_rejected_queue),
        )

    @property
    def exchanges(self) -> tuple[ExchangeSpec, ...]:
        """Exchanges in declaration order (the DLX first, so queues can name it)."""
        return (ExchangeSpec(self.dead_letter_exchange), ExchangeSpec(self.exchange))

    @property
    def queues(self) -> tuple[QueueSpec, ...]:
        """Queues in declaration order."""
        specs: list[QueueSpec] = []
        if self.store_queue is not None:
            store_args: dict[str, str | int] = {"x-queue-type": "stream"}
            if self.store_max_age is not None:
                store_args["x-max-age"] = self.store_max_age
            if self.store_max_length_bytes is not None:
                store_args["x-max-length-bytes"] = self.store_max_length_bytes
            specs.append(QueueSpec(self.store_queue, store_args))
        if self.dead_letter_queue is not None:
            specs.append(QueueSpec(self.dead_letter_queue, {"x-queue-type": "quorum"}))
        if self.outbound_queue is not None:
            specs.append(QueueSpec(self.outbound_queue, self.outbound_arguments()))
        if self.outbound_rejected_queue is not None:
            specs.append(QueueSpec(self.outbound_rejected_queue, self.rejected_arguments()))
        return tuple(specs)

    def outbound_arguments(self) -> dict[str, str | int]:
        """Every argument `dtn.outbound` is declared with (the one place to add one).

        A quorum queue: `x-delivery-limit` is honoured by quorum queues only. The bridge dead-letters a refused
        event itself, with its reasons in headers; the broker dead-letters (to the same exchange and key, with
        `x-death` saying `delivery_limit`) only a message redelivered more than `outbound_delivery_limit` times.
        `at-least-once` (which needs `x-overflow: reject-publish`; dtn.outbound has no length limit, so it never
        refuses a publish) keeps such a message in dtn.outbound until dtn.outbound.rejected accepts it: when that
        queue is full it is not dropped."""
        arguments: dict[str, str | int] = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": self.outbound_rejected_routing_key,
        }
        if self.outbound_delivery_limit is not None:
            arguments["x-delivery-limit"] = self.outbound_delivery_limit
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
        if self.outbound_single_active_consumer:
            arguments["x-single-active-consumer"] = True
        return arguments

    def rejected_arguments(self) -> dict[str, str | int]:
        """Every argument `dtn.outbound.rejected` is declared with: bounded, and full means the next reject is
        refused (nacked: the event stays in dtn.outbound), never that the oldest is dropped."""
        arguments: dict[str, str | int] = {"x-queue-type": "quorum"}
        if self.rejected_max_length is not None:
            arguments["x-max-length"] = self.rejected_max_length
            arguments["x-overflow"] = "reject-publish"
        return arguments

    @property
    def bindings(self) -> tuple[BindingSpec, ...]:
        """Bindings of the declared queues."""
        specs: list[BindingSpec] = []
        if self.store_queue is not None:
            specs.append(BindingSpec(self.store_queue, self.exchange, self.store_binding_key))
        if self.dead_letter_queue is not None:
            specs.append(
                BindingSpec(self.dead_letter_queue, self.dead_letter_exchange, self.dead_letter_binding_key)
            )
        if self.outbound_queue is not None:
            specs.append(BindingSpec(self.outbound_queue, self.exchange, self.outbound_binding_key))
        if self.outbound_rejected_queue is not None:
            specs.append(
                BindingSpec(
                    self.outbound_rejected_queue,
                    self.dead_letter_exchange,
                    self.outbound_rejected_routing_key,
                )
            )
        return tuple(specs)


#: What to do when RabbitMQ refuses to declare a queue because it exists with another value of an argument (it
#: never changes the arguments of an existing queue): the argument -> the advice.
_UPGRADE = "see 'Upgrading the broker topology' in docs/operations.md"
ARGUMENT_ADVICE = {
    "x-single-active-consumer": "outbound.single_active_consumer must match the existing queue, or the queue must be "
                                "re-created with it: see docs/operations.md, 'Turning on single active consumer'",
    "x-delivery-limit": f"broker.outbound_delivery_limit must match the existing queue (or be null): {_UPGRADE}",
    "x-max-length": f"broker.rejected_max_length must match the existing queue (or be null): {_UPGRADE}",
}


def mismatch_advice(reply_text: str) -> str | None:
    """The advice for a PRECONDITION_FAILED reply (a queue declared earlier with other arguments), or None."""
    if "PRECONDITION_FAILED" not in reply_text or "inequivalent arg" not in reply_text:
        return None
    for argument, advice in ARGUMENT_ADVICE.items():
        if f"'{argument}'" in reply_text:
            return advice
    return f"the queue exists with the arguments of an earlier version or configuration: {_UPGRADE}"
