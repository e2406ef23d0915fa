"""RabbitMQ adapter, topology.py and its declaration: against the real broker."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest

from bridge.adapters.rabbitmq import (
    RabbitPublisher,
    Topology,
)
from bridge.errors import BrokerError, BrokerUnavailable, ConfigError
from tests.adapters.rabbitmq.rabbit_helpers import (
    Admin,
)


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
