"""RabbitPublisher.publish_all with streamed confirms, against the real broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from bridge.adapters.rabbitmq import (
    RabbitPublisher,
    Topology,
)
from bridge.errors import BrokerUnavailable, PublishRejected
from bridge.ports import MessagesRejected, OutgoingMessage, PublishResult
from tests.adapters.rabbitmq.rabbit_helpers import (
    Admin,
    messages,
)
from tests.helpers import close_connections, wait_until


class TestPublisher:
    """RabbitPublisher.publish_all with streamed confirms."""

    def test_5000_arrive_in_order_with_properties(self, publisher: RabbitPublisher, admin: Admin) -> None:
        """5,000 messages are confirmed and arrive in order, persistent, with id, type, headers, timestamp."""
        probe = admin.probe_queue(publisher.topology.exchange, "probe.#")
        result = publisher.publish_all(messages(5000), timeout=30)
        assert result == PublishResult(published=5000, confirmed=5000)
        got = admin.read(probe, 5000)
        assert [props.message_id for _, props, _ in got] == [f"m-{i}" for i in range(5000)]
        _, props, body = got[1234]
        assert body.startswith(b"001234") and len(body) == 1024
        assert props.delivery_mode == 2
        assert props.content_type == "application/cloudevents+json"
        assert props.headers == {"seq": 1234}
        assert abs(props.timestamp - time.time()) < 60

    def test_window_bounds_what_is_taken(self, amqp_url: str, topology: Topology, admin: Admin) -> None:
        """The iterable is consumed lazily: never more than `window` messages are unconfirmed."""
        pub = RabbitPublisher([amqp_url], topology=topology, window=50)
        worst = 0

        def watched() -> Iterator[OutgoingMessage]:
            nonlocal worst
            for message in messages(2000):
                worst = max(worst, pub._inflight)
                yield message

        with pub:
            assert pub.publish_all(watched()).confirmed == 2000
        assert 0 < worst <= 50

    def test_empty_unit(self, publisher: RabbitPublisher) -> None:
        """Publishing nothing returns zero counts."""
        assert publisher.publish_all([]) == PublishResult(0, 0)

    def test_unroutable_raises_publish_rejected(
        self, amqp_url: str, topology: Topology, admin: Admin
    ) -> None:
        """Without the catch-all store binding an unmatched key is returned: PublishRejected names it."""
        unbound = replace(topology, store_queue=None)
        with RabbitPublisher([amqp_url], topology=unbound) as pub:
            batch = [
                OutgoingMessage("outbound.ok", b"{}", "ok-1"),
                OutgoingMessage("nowhere.x", b"{}", "lost-1"),
            ]
            with pytest.raises(PublishRejected) as info:
                pub.publish_all(batch, timeout=10)
            assert isinstance(info.value, MessagesRejected)
            assert info.value.message_id == "lost-1"
            assert "lost-1" in str(info.value) and "NO_ROUTE" in str(info.value)
            # The channel survives a return: the next unit goes through.
            assert pub.publish_all([OutgoingMessage("outbound.ok", b"{}", "ok-2")]).confirmed == 1

    def test_nack_raises_publish_rejected(self, publisher: RabbitPublisher, admin: Admin) -> None:
        """A full queue with reject-publish nacks: PublishRejected names the first refused message."""
        admin.probe_queue(
            publisher.topology.exchange,
            "full.#",
            arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
        )
        with pytest.raises(PublishRejected) as info:
            publisher.publish_all(messages(3, routing_key="full.x", prefix="f"), timeout=10)
        assert "'f-1'" in str(info.value) and "nacked" in str(info.value)
        assert isinstance(info.value, MessagesRejected) and info.value.total == 2

    def test_server_closes_connection_mid_publish(
        self, publisher: RabbitPublisher, client_name: str, admin: Admin
    ) -> None:
        """The broker closing the connection mid-unit raises BrokerUnavailable; the next unit reconnects."""
        killer = threading.Timer(0.5, close_connections, args=(client_name, "test"))
        killer.start()
        try:
            with pytest.raises(BrokerUnavailable) as info:
                publisher.publish_all(messages(5_000_000), timeout=20)
        finally:
            killer.join()
        assert "320" in str(info.value) or "lost" in str(info.value)
        assert not publisher.connected
        assert publisher.publish_all(messages(10)) == PublishResult(10, 10)
        assert publisher.connected

    def test_idle_connection_closed_by_server_is_replaced(
        self, publisher: RabbitPublisher, client_name: str
    ) -> None:
        """A connection the broker dropped while idle is noticed and replaced before the next unit."""
        assert close_connections(client_name) == 1
        wait_until(lambda: not publisher.connected)
        assert publisher.publish_all(messages(5)).confirmed == 5

    def test_heartbeats_run_while_idle(self, amqp_url: str, topology: Topology, admin: Admin) -> None:
        """With a 1 s heartbeat the connection survives 3 s of caller inactivity (the I/O thread answers)."""
        with RabbitPublisher([amqp_url], topology=topology, heartbeat=1) as pub:
            time.sleep(3.0)  # the scenario: 3 heartbeat intervals of caller inactivity must pass
            assert pub.connected
            assert pub.publish_all(messages(3)).confirmed == 3

    def test_close_then_connect_again(self, publisher: RabbitPublisher) -> None:
        """close() ends the connection and connect() opens a new one."""
        publisher.close()
        assert not publisher.connected
        publisher.connect()
        assert publisher.publish_all(messages(2)).confirmed == 2
