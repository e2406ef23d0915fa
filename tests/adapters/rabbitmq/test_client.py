"""Connecting (client.py, endpoints.py): failover, errors, reconnect with backoff, bad settings."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import pytest

from bridge.adapters.rabbitmq import (
    RabbitPublisher,
    Topology,
)
from bridge.errors import BrokerUnavailable, ConfigError
from bridge.ports import Backoff
from tests.adapters.rabbitmq.rabbit_helpers import (
    UNREACHABLE_URL,
    Admin,
    messages,
)


def _negotiated_heartbeat(client_name: str) -> int:
    """The heartbeat timeout the broker agreed with the connection named `client_name` (rabbitmqctl)."""
    listing = subprocess.run(["rabbitmqctl", "list_connections", "-q", "timeout", "client_properties"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    [timeout] = [line.split("\t", 1)[0] for line in listing.splitlines()
                 if f'{{"connection_name","{client_name}"}}' in line]
    return int(timeout)


class TestHeartbeat:
    """broker.heartbeat: the value is what the connection uses, and 0 disables heartbeats (issue 15: 0 passed
    check-config, then `run` refused it naming a key that does not exist)."""

    @pytest.mark.parametrize("seconds", [0, 7])
    def test_negotiated(self, seconds: int, amqp_url: str, topology: Topology, admin: Admin,
                        client_name: str) -> None:
        with RabbitPublisher([amqp_url], topology=topology, heartbeat=seconds, client_name=client_name) as pub:
            assert _negotiated_heartbeat(client_name) == seconds
            assert pub.publish_all(messages(1)).confirmed == 1


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
            (["amqp://localhost"], {"heartbeat": -1}),
        ]
        for urls, options in bad:
            with pytest.raises(ConfigError):
                RabbitPublisher(urls, **options)
