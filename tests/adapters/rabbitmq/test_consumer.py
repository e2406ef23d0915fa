"""RabbitConsumer on the outbound queue, against the real broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.adapters.rabbitmq import (
    REJECT_CODE_HEADER,
    REJECT_REASON_HEADER,
    RabbitConsumer,
    RabbitPublisher,
    Topology,
)
from bridge.errors import BrokerUnavailable
from bridge.ports import OutgoingMessage
from tests.adapters.rabbitmq.rabbit_helpers import (
    Admin,
    messages,
)
from tests.helpers import close_connections, wait_until


class TestConsumer:
    """RabbitConsumer on the outbound queue."""

    @pytest.fixture
    def consumer(
        self, amqp_url: str, topology: Topology, client_name: str, admin: Admin
    ) -> Iterator[RabbitConsumer]:
        """A consumer of the test topology's outbound queue, prefetch 10."""
        assert topology.outbound_queue is not None
        con = RabbitConsumer(
            [amqp_url], queue=topology.outbound_queue, prefetch=10, topology=topology, client_name=client_name
        )
        con.connect()
        try:
            yield con
        finally:
            con.close()

    def test_receive_and_ack(
        self, publisher: RabbitPublisher, consumer: RabbitConsumer, admin: Admin
    ) -> None:
        """Deliveries carry body, id, headers and key; acked ones are gone from the queue."""
        publisher.publish_all(messages(3, routing_key="outbound.dip", prefix="o"))
        got = list(consumer.deliveries(inactivity_timeout=2))
        assert [d.message_id for d in got] == ["o-0", "o-1", "o-2"]
        assert (
            got[0].routing_key == "outbound.dip" and got[0].headers == {"seq": 0} and not got[0].redelivered
        )
        assert got[2].body.startswith(b"000002") and got[0].content_type == "application/cloudevents+json"
        consumer.ack(got[2], multiple=True)
        consumer.close()
        wait_until(lambda: admin.message_count(consumer.topology.outbound_queue or "") == 0, 5)

    def test_reject_dead_letters_with_reason(
        self, publisher: RabbitPublisher, consumer: RabbitConsumer, admin: Admin
    ) -> None:
        """reject() puts a copy with code and reason headers in the rejected queue, removes the original."""
        topology = consumer.topology
        publisher.publish_all([OutgoingMessage("outbound.dip", b'{"a":1}', "r-1", headers={"ce-type": "x"})])
        delivery = consumer.get(timeout=5)
        assert delivery is not None
        consumer.reject(delivery, "schema_invalid", "field 'mpan' is missing")
        [(_, props, body)] = admin.read(topology.outbound_rejected_queue or "", 1, timeout=5)
        assert body == b'{"a":1}' and props.message_id == "r-1" and props.delivery_mode == 2
        assert props.headers[REJECT_CODE_HEADER] == "schema_invalid"
        assert props.headers[REJECT_REASON_HEADER] == "field 'mpan' is missing"
        assert (
            props.headers["ce-type"] == "x" and props.headers["x-dtn-original-routing-key"] == "outbound.dip"
        )
        consumer.close()
        wait_until(lambda: admin.message_count(topology.outbound_queue or "") == 0, 5)

    def test_unacked_is_redelivered(
        self, amqp_url: str, publisher: RabbitPublisher, consumer: RabbitConsumer
    ) -> None:
        """A delivery not acked before close comes back, flagged redelivered, to the next consumer."""
        publisher.publish_all(messages(1, routing_key="outbound.dip", prefix="u"))
        first = consumer.get(timeout=5)
        assert first is not None and not first.redelivered
        consumer.close()
        consumer.connect()
        again = consumer.get(timeout=5)
        assert again is not None and again.message_id == "u-0" and again.redelivered
        consumer.ack(again)

    def test_lost_connection_raises_then_reconnects(
        self, publisher: RabbitPublisher, consumer: RabbitConsumer, client_name: str
    ) -> None:
        """A broker-closed connection surfaces once as BrokerUnavailable; stale deliveries cannot be acked."""
        publisher.publish_all(messages(1, routing_key="outbound.dip", prefix="l"))
        stale = consumer.get(timeout=5)
        assert stale is not None
        publisher.close()  # only the consumer's connection carries the name now
        assert close_connections(client_name) == 1
        wait_until(lambda: not consumer.connected)
        with pytest.raises(BrokerUnavailable):
            consumer.get(timeout=1)
        with pytest.raises(BrokerUnavailable):
            consumer.ack(stale)
        again = consumer.get(timeout=5)
        assert again is not None and again.message_id == "l-0" and again.redelivered
        consumer.ack(again)
