"""Fixtures of the RabbitMQ adapter tests (against the real broker, 127.0.0.1:5672 unless DTN_TEST_AMQP_URL says
otherwise). Every test uses its own uniquely named topology and connection name, and the `admin` fixture deletes them.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from bridge.adapters.rabbitmq import RabbitPublisher, Topology
from tests.adapters.rabbitmq.rabbit_helpers import Admin


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
