"""Helpers shared by the whole suite: waiting on a condition (never a fixed sleep), closing a test's own broker
connections, and comparing published bodies whose signatures differ."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, message: str | Callable[[], object] = "",
               interval: float = 0.05) -> None:
    """Poll `predicate()` until it is true; fail the test with `message` when `timeout` seconds pass first.

    The predicate is asked once more at the deadline, so a slow machine's last poll still counts. A callable
    `message` is called only then, to show the state that did not come.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    if not predicate():
        said = message() if callable(message) else message
        raise AssertionError(f"not within {timeout:g}s: {said or getattr(predicate, '__name__', 'the condition')}")


def close_connections(client_name: str, reason: str = "test") -> int:
    """Make the broker close every connection whose connection_name is `client_name`; returns how many.

    Closes only this test's connections, never other users' of the same (shared) broker.
    """
    listing = subprocess.run(["rabbitmqctl", "list_connections", "-q", "pid", "client_properties"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    closed = 0
    for line in listing.splitlines():
        if f'{{"connection_name","{client_name}"}}' in line:
            pid = line.split("\t", 1)[0]
            subprocess.run(["rabbitmqctl", "close_connection", pid, reason], capture_output=True, timeout=30,
                           check=True)
            closed += 1
    return closed


def unsigned(body: bytes) -> bytes:
    """A body as the bridge publishes it (the canonical event, then `"signature"` as its last member) less the
    signature: what two signings of one event share, byte for byte. ES256 (the default) draws a fresh nonce for
    every signature, so two signatures of one event differ: compare this, and verify each signature."""
    head, found, _signature = body.rpartition(b',"signature":"')
    assert found and body.endswith(b'"}'), f"not a body the bridge signed: ...{body[-80:]!r}"
    return head + b"}"
