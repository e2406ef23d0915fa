"""The broker ports' contract: the same cases against the in-memory fakes (tests/fakes.py) and against the RabbitMQ
adapter on the real broker, so that a chain tested on the fakes meets the same behaviour in production."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bridge.adapters.rabbitmq import (
    REJECT_CODE_HEADER,
    REJECT_REASON_HEADER,
    RabbitConsumer,
    RabbitPublisher,
    Topology,
)
from bridge.errors import BrokerUnavailable
from bridge.ports import Consumer, MessagesRejected, OutgoingMessage, Publisher, PublishResult
from tests.adapters.rabbitmq.rabbit_helpers import messages
from tests.fakes import DeadLetter, FakeConsumer, FakePublisher
from tests.helpers import close_connections, wait_until

PREFETCH = 10
KEY = "outbound.contract"


@dataclass
class Side:
    """One implementation of both ports, with what the cases need to set up and observe on it."""

    publisher: Publisher
    consumer: Consumer
    admin: Any = None  # the real side's inspection connection
    topology: Topology | None = None
    client_name: str = ""
    closers: list[Any] = field(default_factory=list)

    def dead_letters(self, count: int) -> list[DeadLetter]:
        if isinstance(self.consumer, FakeConsumer):
            return self.consumer.dead_letters[:count]
        assert self.topology is not None and self.topology.outbound_rejected_queue is not None
        got = self.admin.read(self.topology.outbound_rejected_queue, count, timeout=5)
        return [DeadLetter(props.message_id, body, props.headers["x-dtn-original-routing-key"],
                           props.headers[REJECT_CODE_HEADER], props.headers[REJECT_REASON_HEADER])
                for _, props, body in got]

    def drop_consumer_connection(self) -> None:
        """The broker closes the consumer's connection."""
        if isinstance(self.consumer, FakeConsumer):
            self.consumer.lose_connection()
            return
        assert close_connections(self.client_name) == 1
        consumer = self.consumer
        assert isinstance(consumer, RabbitConsumer)
        wait_until(lambda: not consumer.connected)

    def refuse(self, routing_key: str, message_ids: list[str]) -> None:
        """The broker will nack these messages: a queue holding one message (reject-publish) on the real side."""
        if isinstance(self.publisher, FakePublisher):
            self.publisher.nack(*message_ids)
            return
        assert self.topology is not None
        self.admin.probe_queue(self.topology.exchange, routing_key,
                               arguments={"x-max-length": 1, "x-overflow": "reject-publish"})


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.broker)])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    if request.param == "fake":
        consumer = FakeConsumer(prefetch=PREFETCH)
        publisher = FakePublisher(route=lambda m: consumer.offer(m) if m.routing_key.startswith("outbound.") else None)
        yield Side(publisher, consumer)
        return
    amqp_url: str = request.getfixturevalue("amqp_url")
    topology: Topology = request.getfixturevalue("topology")
    client_name: str = request.getfixturevalue("client_name")
    admin = request.getfixturevalue("admin")
    assert topology.outbound_queue is not None
    real_publisher = RabbitPublisher([amqp_url], topology=topology, client_name=f"{client_name}-publisher")
    real_consumer = RabbitConsumer([amqp_url], queue=topology.outbound_queue, prefetch=PREFETCH, topology=topology,
                                   client_name=client_name)
    real_publisher.connect()  # declares the topology, so that a case can bind its own queue to the exchange
    try:
        yield Side(real_publisher, real_consumer, admin, topology, client_name)
    finally:
        real_consumer.close()
        real_publisher.close()


def test_publish_is_confirmed_and_delivered_in_order(side: Side) -> None:
    """Every message is confirmed, then delivered in order with its body, id, key, headers and content type."""
    assert side.publisher.publish_all(messages(3, routing_key=KEY, prefix="p")) == PublishResult(3, 3)
    got = list(side.consumer.deliveries(inactivity_timeout=2))
    assert [d.message_id for d in got] == ["p-0", "p-1", "p-2"]
    assert got[1].body.startswith(b"000001") and len(got[1].body) == 1024
    assert (got[1].routing_key, dict(got[1].headers), got[1].content_type, got[1].redelivered) == (
        KEY, {"seq": 1}, "application/cloudevents+json", False)
    assert got[1].timestamp is not None


def test_an_empty_unit_confirms_nothing(side: Side) -> None:
    assert side.publisher.publish_all([]) == PublishResult(0, 0)


def test_get_times_out_with_nothing_to_get(side: Side) -> None:
    assert side.consumer.get(timeout=0.2) is None


def test_acked_deliveries_are_gone(side: Side) -> None:
    """One `multiple` ack settles every earlier delivery: nothing comes back after a new connection."""
    side.publisher.publish_all(messages(3, routing_key=KEY))
    got = [side.consumer.get(timeout=5) for _ in range(3)]
    assert all(d is not None for d in got)
    last = got[-1]
    assert last is not None
    side.consumer.ack(last, multiple=True)
    side.consumer.close()
    assert side.consumer.get(timeout=0.5) is None


def test_unsettled_deliveries_come_back_redelivered(side: Side) -> None:
    """Closing gives back what was not settled (flagged redelivered); a delivery of a closed connection cannot be
    settled any more."""
    side.publisher.publish_all(messages(2, routing_key=KEY, prefix="u"))
    first, second = side.consumer.get(timeout=5), side.consumer.get(timeout=5)
    assert first is not None and second is not None
    side.consumer.ack(first)
    side.consumer.close()
    with pytest.raises(BrokerUnavailable):
        side.consumer.ack(second)
    again = side.consumer.get(timeout=5)
    assert again is not None and (again.message_id, again.redelivered) == ("u-1", True)
    side.consumer.ack(again)
    assert side.consumer.get(timeout=0.3) is None


def test_reject_dead_letters_with_the_reason(side: Side) -> None:
    """A reject sends the message to the dead-letter queue with its code and reason, and settles it."""
    side.publisher.publish_all([OutgoingMessage(KEY, b'{"a":1}', "r-1")])
    delivery = side.consumer.get(timeout=5)
    assert delivery is not None
    side.consumer.reject(delivery, "schema_invalid", "field 'mpan' is missing")
    assert side.dead_letters(1) == [DeadLetter("r-1", b'{"a":1}', KEY, "schema_invalid", "field 'mpan' is missing")]
    side.consumer.close()
    assert side.consumer.get(timeout=0.5) is None


def test_prefetch_bounds_what_is_unsettled(side: Side) -> None:
    """No more than the prefetch window is delivered unsettled; an ack makes room for the next."""
    side.publisher.publish_all(messages(PREFETCH + 2, routing_key=KEY, prefix="w"))
    held = [side.consumer.get(timeout=5) for _ in range(PREFETCH)]
    assert [d.message_id for d in held if d is not None] == [f"w-{i}" for i in range(PREFETCH)]
    assert side.consumer.get(timeout=0.5) is None
    first = held[0]
    assert first is not None
    side.consumer.ack(first)
    after = side.consumer.get(timeout=5)
    assert after is not None and after.message_id == f"w-{PREFETCH}"


def test_a_lost_connection_is_reported_once_then_redelivers(side: Side) -> None:
    """The broker drops the connection: `get` raises BrokerUnavailable once, a stale delivery cannot be acked, and
    the next `get` reconnects and gets it again, flagged redelivered."""
    side.publisher.publish_all(messages(1, routing_key=KEY, prefix="l"))
    stale = side.consumer.get(timeout=5)
    assert stale is not None
    side.drop_consumer_connection()
    with pytest.raises(BrokerUnavailable):
        side.consumer.get(timeout=1)
    with pytest.raises(BrokerUnavailable):
        side.consumer.ack(stale)
    again = side.consumer.get(timeout=5)
    assert again is not None and (again.message_id, again.redelivered) == ("l-0", True)
    side.consumer.ack(again)


def test_a_nack_raises_messages_rejected(side: Side) -> None:
    """Refused messages end the unit with MessagesRejected naming the first and counting them all."""
    side.refuse("full.#", ["f-1", "f-2"])
    with pytest.raises(MessagesRejected) as info:
        side.publisher.publish_all(messages(3, routing_key="full.x", prefix="f"), timeout=10)
    assert (info.value.message_id, info.value.total) == ("f-1", 2)
    assert "'f-1'" in str(info.value) and "nacked" in str(info.value)
    assert side.publisher.publish_all(messages(1, routing_key=KEY, prefix="after")) == PublishResult(1, 1)
