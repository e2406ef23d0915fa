"""RabbitMQ adapter against the real broker (127.0.0.1:5672 unless DTN_TEST_AMQP_URL says otherwise).

Every test uses its own uniquely named topology and connection name, and the `admin` fixture deletes them.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from bridge.adapters.rabbitmq import REJECT_CODE_HEADER, REJECT_REASON_HEADER, RabbitConsumer, RabbitPublisher
from bridge.adapters.topology import Topology
from bridge.errors import BrokerError, BrokerUnavailable, ConfigError, PublishRejected
from bridge.ports import Backoff, MessagesRejected, OutgoingMessage, PublishResult

Admin = Any  # the `admin` fixture's class lives in conftest.py (tests/adapters is not a package)

UNREACHABLE_URL = "amqp://guest:s3cret-pw@127.0.0.1:1/%2F"


def close_connections(client_name: str, reason: str = "test") -> int:
    """Make the broker close every connection whose connection_name is `client_name`; returns how many.

    Closes only this test's connections, never other users' of the same broker.
    """
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    closed = 0
    for line in listing.splitlines():
        if f'{{"connection_name","{client_name}"}}' in line:
            pid = line.split("\t", 1)[0]
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid, reason], capture_output=True, timeout=30, check=True
            )
            closed += 1
    return closed


def messages(count: int, routing_key: str = "probe.x", prefix: str = "m") -> Iterator[OutgoingMessage]:
    """`count` 1 KB messages with ids prefix-0, prefix-1, ..."""
    for i in range(count):
        yield OutgoingMessage(routing_key, b"%06d" % i + b"x" * 1018, f"{prefix}-{i}", headers={"seq": i})


def wait_until(predicate: object, timeout: float = 10.0) -> bool:
    """Poll `predicate()` until true or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(autouse=True)
def _time_limit() -> Iterator[None]:
    """Fail any broker test that runs longer than 45 s instead of hanging the suite."""

    def expired(_signum: int, _frame: object) -> None:
        raise TimeoutError("test exceeded 45 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(45)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def publisher(amqp_url: str, topology: Topology, client_name: str, admin: Admin) -> Iterator[RabbitPublisher]:
    """A connected publisher on the test topology."""
    pub = RabbitPublisher([amqp_url], topology=topology, client_name=client_name, connect_timeout=5.0)
    pub.connect()
    try:
        yield pub
    finally:
        pub.close()


class TestTopology:
    """Declaring the topology."""

    def test_declared_twice_is_fine(self, amqp_url: str, topology: Topology, admin: Admin) -> None:
        """Connecting twice (two clients) re-declares the same topology without error."""
        for _ in range(2):
            pub = RabbitPublisher([amqp_url], topology=topology)
            pub.connect()
            assert pub.connected
            pub.close()
            assert not pub.connected
        assert admin.message_count(topology.outbound_queue or "") == 0

    def test_queue_types_and_retention(self, amqp_url: str, suffix: str, admin: Admin) -> None:
        """The store is a stream with max-age and max-length-bytes; outbound dead-letters to the DLX."""
        topology = replace(
            Topology(store_max_age="7D", store_max_length_bytes=10_000_000).with_suffix(suffix)
        )
        with RabbitPublisher([amqp_url], topology=topology):
            pass
        listing = subprocess.run(
            ["rabbitmqctl", "list_queues", "-q", "name", "type", "arguments"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        rows = {line.split("\t")[0]: line for line in listing.splitlines() if suffix in line}
        assert "stream" in rows[topology.store_queue or ""]
        assert '"7D"' in rows[topology.store_queue or ""] and "10000000" in rows[topology.store_queue or ""]
        outbound = rows[topology.outbound_queue or ""]
        assert (
            "quorum" in outbound
            and topology.dead_letter_exchange in outbound
            and "outbound.rejected" in outbound
        )
        assert "quorum" in rows[topology.dead_letter_queue or ""]
        assert "quorum" in rows[topology.outbound_rejected_queue or ""]

    def test_mismatched_arguments_name_the_queue(
        self, amqp_url: str, topology: Topology, admin: Admin
    ) -> None:
        """An existing queue with other arguments gives a BrokerError (not Unavailable) naming it."""
        assert topology.outbound_queue is not None
        admin.channel.queue_declare(topology.outbound_queue, durable=True)  # classic, no DLX
        pub = RabbitPublisher([amqp_url], topology=topology)
        with pytest.raises(BrokerError) as info:
            pub.connect()
        assert not isinstance(info.value, BrokerUnavailable)
        assert topology.outbound_queue in str(info.value)
        assert "PRECONDITION_FAILED" in str(info.value)
        assert not pub.connected

    def test_bad_retention_is_a_config_error(self) -> None:
        """A max-age RabbitMQ would not understand is refused before reaching the broker."""
        with pytest.raises(ConfigError):
            Topology(store_max_age="30 days")

    def test_with_suffix_renames_everything(self) -> None:
        """Every exchange and queue name gets the suffix; routing keys stay."""
        t = Topology().with_suffix("-x")
        names = [t.exchange, t.dead_letter_exchange] + [q.name for q in t.queues]
        assert all(n.endswith("-x") for n in names) and t.outbound_rejected_routing_key == "outbound.rejected"


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
        assert wait_until(lambda: not publisher.connected)
        assert publisher.publish_all(messages(5)).confirmed == 5

    def test_heartbeats_run_while_idle(self, amqp_url: str, topology: Topology, admin: Admin) -> None:
        """With a 1 s heartbeat the connection survives 3 s of caller inactivity (the I/O thread answers)."""
        with RabbitPublisher([amqp_url], topology=topology, heartbeat=1) as pub:
            time.sleep(3.0)
            assert pub.connected
            assert pub.publish_all(messages(3)).confirmed == 3

    def test_close_then_connect_again(self, publisher: RabbitPublisher) -> None:
        """close() ends the connection and connect() opens a new one."""
        publisher.close()
        assert not publisher.connected
        publisher.connect()
        assert publisher.publish_all(messages(2)).confirmed == 2


class TestConnecting:
    """Failover, errors and backoff."""

    def test_failover_to_second_url(self, amqp_url: str, topology: Topology, admin: Admin) -> None:
        """An unreachable first URL is skipped and the second one is used."""
        with RabbitPublisher([UNREACHABLE_URL, amqp_url], topology=topology, connect_timeout=3) as pub:
            assert pub.connected
            assert pub.publish_all(messages(3)).confirmed == 3

    def test_no_broker_raises_unavailable_without_secrets(self, topology: Topology) -> None:
        """When no URL answers, BrokerUnavailable names host:port but never the password."""
        pub = RabbitPublisher([UNREACHABLE_URL], topology=topology, connect_timeout=3)
        with pytest.raises(BrokerUnavailable) as info:
            pub.publish_all(messages(1))
        assert "127.0.0.1:1" in str(info.value)
        assert "s3cret" not in str(info.value) and "s3cret" not in repr(info.value.__cause__)
        assert not pub.connected

    def test_ensure_connected_gives_up_after_attempts(self, topology: Topology) -> None:
        """ensure_connected retries with backoff and raises after max_attempts."""
        pub = RabbitPublisher([UNREACHABLE_URL], topology=topology, connect_timeout=3)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            pub.ensure_connected(Backoff(initial=0.05), max_attempts=3)
        assert time.monotonic() - started >= 0.05

    def test_ensure_connected_stops_on_event(self, topology: Topology) -> None:
        """A set stop event ends the retry loop promptly."""
        pub = RabbitPublisher([UNREACHABLE_URL], topology=topology, connect_timeout=3)
        stop = threading.Event()
        stop.set()
        with pytest.raises(BrokerUnavailable, match="stopped"):
            pub.ensure_connected(Backoff(initial=10), stop=stop)

    def test_ensure_connected_connects(self, amqp_url: str, topology: Topology, admin: Admin) -> None:
        """ensure_connected returns once connected."""
        pub = RabbitPublisher([amqp_url], topology=topology)
        pub.ensure_connected()
        assert pub.connected
        pub.close()

    def test_bad_settings_are_config_errors(self) -> None:
        """Empty URL lists, a bare string, bad URLs and a zero window are refused up front."""
        bad: list[tuple[Any, dict[str, Any]]] = [
            ([], {}),
            ("amqp://localhost", {}),
            (["http://localhost"], {}),
            (["amqp://localhost"], {"window": 0}),
            (["amqp://localhost"], {"heartbeat": 0}),
        ]
        for urls, options in bad:
            with pytest.raises(ConfigError):
                RabbitPublisher(urls, **options)


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
        assert wait_until(lambda: admin.message_count(consumer.topology.outbound_queue or "") == 0, 5)

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
        assert wait_until(lambda: admin.message_count(topology.outbound_queue or "") == 0, 5)

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
        assert wait_until(lambda: not consumer.connected)
        with pytest.raises(BrokerUnavailable):
            consumer.get(timeout=1)
        with pytest.raises(BrokerUnavailable):
            consumer.ack(stale)
        again = consumer.get(timeout=5)
        assert again is not None and again.message_id == "l-0" and again.redelivered
        consumer.ack(again)
