"""Helpers of the RabbitMQ adapter tests: messages to publish, closing a test's own connections, waiting."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

from bridge.ports import OutgoingMessage

Admin = Any  # the `admin` fixture's class lives in tests/conftest.py (tests/adapters is not a package)

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
