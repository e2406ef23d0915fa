"""Helpers of the RabbitMQ adapter tests: messages to publish; waiting: tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bridge.ports import OutgoingMessage

Admin = Any  # the `admin` fixture's class lives in tests/conftest.py (tests/adapters is not a package)

UNREACHABLE_URL = "amqp://guest:s3cret-pw@127.0.0.1:1/%2F"



def messages(count: int, routing_key: str = "probe.x", prefix: str = "m") -> Iterator[OutgoingMessage]:
    """`count` 1 KB messages with ids prefix-0, prefix-1, ..."""
    for i in range(count):
        yield OutgoingMessage(routing_key, b"%06d" % i + b"x" * 1018, f"{prefix}-{i}", headers={"seq": i})

