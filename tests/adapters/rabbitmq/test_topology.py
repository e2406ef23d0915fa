"""RabbitMQ adapter, topology.py and its declaration: against the real broker."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace

import pytest

from bridge.adapters.rabbitmq import (
    RabbitConsumer,
    RabbitPublisher,
    Topology,
)
from bridge.config import parse_config
from bridge.errors import BrokerError, BrokerUnavailable, ConfigError, PublishRejected
from bridge.ports import OutgoingMessage
from bridge.service import topology_for
from tests.adapters.rabbitmq.rabbit_helpers import (
    Admin,
)
from tests.helpers import wait_until


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
        assert '"x-delivery-limit",1000' in outbound and '"x-dead-letter-strategy","at-least-once"' in outbound
        rejected = rows[topology.outbound_rejected_queue or ""]
        assert "quorum" in rejected and '"x-max-length",100000' in rejected and '"reject-publish"' in rejected
        # one queue keeps the rejected events: no catch-all queue on the dead-letter exchange beside it
        assert topology.dead_letter_queue is None and set(rows) == {q.name for q in topology.queues}

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
        assert "Upgrading the broker topology" in str(info.value)
        assert not pub.connected

    def test_upgrade_keeps_an_existing_outbound_queue_with_null_limits(
        self, amqp_url: str, topology: Topology, admin: Admin
    ) -> None:
        """dtn.outbound as earlier versions declared it (no delivery limit): the new arguments are refused by name,
        and broker.outbound_delivery_limit: null (the limit then set by policy) starts on it as it is."""
        assert topology.outbound_queue is not None
        earlier = {"x-queue-type": "quorum", "x-dead-letter-exchange": topology.dead_letter_exchange,
                   "x-dead-letter-routing-key": topology.outbound_rejected_routing_key}
        admin.channel.exchange_declare(topology.dead_letter_exchange, "topic", durable=True)
        admin.channel.queue_declare(topology.outbound_queue, durable=True, arguments=earlier)
        with pytest.raises(BrokerError, match="x-delivery-limit"):
            RabbitPublisher([amqp_url], topology=topology).connect()
        kept = replace(topology, outbound_delivery_limit=None)
        with RabbitPublisher([amqp_url], topology=kept) as publisher:
            assert publisher.connected

    def test_bad_retention_is_a_config_error(self) -> None:
        """A max-age RabbitMQ would not understand is refused before reaching the broker, naming the real key."""
        with pytest.raises(ConfigError) as info:
            Topology(store_max_age="30 days")
        assert info.value.key == "broker.stream_max_age"
        for name in ("outbound_delivery_limit", "rejected_max_length"):
            with pytest.raises(ConfigError) as info:
                Topology(**{name: 0})
            assert info.value.key == f"broker.{name}"

    def test_the_defaults_are_the_configuration_defaults(self) -> None:
        config = parse_config({}, base_dir="/")
        topology = topology_for(config)
        assert (topology.outbound_delivery_limit, topology.rejected_max_length, topology.store_max_age) == (
            config.broker.outbound_delivery_limit, config.broker.rejected_max_length, config.broker.stream_max_age)
        assert topology == Topology()
        none = topology_for(parse_config({"broker": {"outbound_delivery_limit": None, "rejected_max_length": None}},
                                         base_dir="/"))
        assert [q.arguments for q in none.queues][1:] == [
            {"x-queue-type": "quorum", "x-dead-letter-exchange": "dtn.dead-letter",
             "x-dead-letter-routing-key": "outbound.rejected"}, {"x-queue-type": "quorum"}]


class TestDeadLetters:
    """Rejected outbound events: kept once, in dtn.outbound.rejected, bounded, never dropped by the broker."""

    def test_the_broker_dead_letters_after_the_delivery_limit_once(self, amqp_url: str, topology: Topology,
                                                                   admin: Admin) -> None:
        """x-delivery-limit is set explicitly (RabbitMQ 4 would apply 20): a message given back more often than
        that goes to dtn.outbound.rejected, with x-death saying why, and nowhere else."""
        limited = replace(topology, outbound_delivery_limit=2)
        assert limited.outbound_queue is not None and limited.outbound_rejected_queue is not None
        with RabbitPublisher([amqp_url], topology=limited) as publisher:
            publisher.publish_all([OutgoingMessage("outbound.x", b"poison", "p-1")])
        given_back = 0
        while given_back < 3:  # delivered three times: the first delivery and the two redeliveries allowed
            method, _props, _body = admin.channel.basic_get(limited.outbound_queue)
            if method is not None:
                admin.channel.basic_nack(method.delivery_tag, requeue=True)
                given_back += 1
        wait_until(lambda: admin.message_count(limited.outbound_rejected_queue or "") == 1, 10)
        [(_method, props, body)] = admin.read(limited.outbound_rejected_queue, 1, timeout=5)
        assert body == b"poison" and props.headers["x-death"][0]["reason"] == "delivery_limit"
        assert admin.message_count(limited.outbound_queue) == 0
        bindings = subprocess.run(["rabbitmqctl", "list_bindings", "-q", "source_name", "destination_name"],
                                  capture_output=True, text=True, timeout=30, check=True).stdout
        assert [line.split("\t")[1] for line in bindings.splitlines()
                if line.split("\t")[0] == limited.dead_letter_exchange] == [limited.outbound_rejected_queue]

    def test_a_full_rejected_queue_refuses_the_reject_and_keeps_the_event(self, amqp_url: str, topology: Topology,
                                                                          admin: Admin) -> None:
        """broker.rejected_max_length: when dtn.outbound.rejected is full the reject is nacked (PublishRejected)
        and the event stays in dtn.outbound, unacked, redelivered later: nothing is dropped."""
        small = replace(topology, rejected_max_length=1)
        assert small.outbound_queue is not None and small.outbound_rejected_queue is not None
        with RabbitPublisher([amqp_url], topology=small) as publisher:
            publisher.publish_all([OutgoingMessage("outbound.x", b"bad-%d" % i, f"b-{i}") for i in range(4)])
        consumer = RabbitConsumer([amqp_url], queue=small.outbound_queue, topology=small, prefetch=10)
        refused: list[str] = []
        try:
            for _ in range(4):
                delivery = consumer.get(timeout=10)
                assert delivery is not None
                try:
                    consumer.reject(delivery, "schema_invalid", "test")
                except PublishRejected:
                    refused.append(delivery.message_id or "")
                    break
        finally:
            consumer.close()
        assert refused, "the full queue took every reject"
        kept = admin.message_count(small.outbound_rejected_queue)
        assert 1 <= kept < 4
        wait_until(lambda: admin.message_count(small.outbound_queue or "") == 4 - kept, 10)

    def test_with_suffix_renames_everything(self) -> None:
        """Every exchange and queue name gets the suffix; routing keys stay."""
        t = Topology().with_suffix("-x")
        names = [t.exchange, t.dead_letter_exchange] + [q.name for q in t.queues]
        assert all(n.endswith("-x") for n in names) and t.outbound_rejected_routing_key == "outbound.rejected"


class TestUpgradeByPolicy:
    def test_a_policy_gives_an_existing_queue_its_delivery_limit(self, amqp_url: str, topology: Topology,
                                                                 admin: Admin) -> None:
        """The upgrade path docs/operations.md gives: dtn.outbound as earlier versions declared it, the bridge told
        not to declare the limit (null), and the limit set by a policy instead: the broker honours it."""
        assert topology.outbound_queue is not None and topology.outbound_rejected_queue is not None
        earlier = {"x-queue-type": "quorum", "x-dead-letter-exchange": topology.dead_letter_exchange,
                   "x-dead-letter-routing-key": topology.outbound_rejected_routing_key}
        admin.channel.exchange_declare(topology.dead_letter_exchange, "topic", durable=True)
        admin.channel.queue_declare(topology.outbound_queue, durable=True, arguments=earlier)
        kept = replace(topology, outbound_delivery_limit=None)
        policy = f"dtn-test-{topology.outbound_queue}"
        subprocess.run(["rabbitmqctl", "set_policy", "--apply-to", "queues", policy,
                        f"^{re.escape(topology.outbound_queue)}$",
                        '{"delivery-limit": 1, "dead-letter-strategy": "at-least-once", "overflow": "reject-publish"}'],
                       capture_output=True, timeout=30, check=True)
        try:
            with RabbitPublisher([amqp_url], topology=kept) as publisher:
                publisher.publish_all([OutgoingMessage("outbound.x", b"poison", "p-1")])
            given_back = 0
            while given_back < 2:
                method, _props, _body = admin.channel.basic_get(topology.outbound_queue)
                if method is not None:
                    admin.channel.basic_nack(method.delivery_tag, requeue=True)
                    given_back += 1
            wait_until(lambda: admin.message_count(topology.outbound_rejected_queue or "") == 1, 10)
        finally:
            subprocess.run(["rabbitmqctl", "clear_policy", policy], capture_output=True, timeout=30, check=True)
